"""What happens to a candidate's text between generation and verification.

``clean`` turns what the model wrote into a suggestion that fits the cursor (one line or a
block, cut where the indentation ends or the code below already follows, the suffix's
repeat dropped, indentation normalised); ``partials`` gives the forms of a generation cut
short by the time budget that can stand on their own, and undoes token healing. The
pipeline (``lsp.core.pipeline``) calls both; distillation cleans a teacher's samples with
``clean`` so a student learns exactly what the server would show.
"""
