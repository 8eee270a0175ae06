"""One-compartment oral model of Theophylline (the reference model of nlme_bayes.examples).

A model file is ordinary Python: it defines ``model`` (an ``nlme_bayes.Model``) or a function
``make_model(**options)`` that returns one. Plans and ``nlme-bayes fit --model-file`` import it
from the path they are given; nothing else in a plan is executed.
"""

import nlme_bayes as nb


def make_model(error: str = "additive") -> nb.Model:
    """``error``: "additive" (as in the Stan reference fit) or "combined"."""
    from nlme_bayes.examples import theophylline_model

    model = theophylline_model()
    if error == "combined":
        return model.replace(error=nb.Combined(), name="theophylline_1cmt_oral_combined")
    return model
