"""Labels of the log p estimators in figures and tables, best estimator first."""

__all__ = ["ESTIMATORS", "logp_label"]

# The estimators a figure may compare samples with, best first, and their labels.
ESTIMATORS = {
    "exact": "exact log p",
    "pf_ode": "PF-ODE log p (estimate)",
    "elbo": "ELBO (lower bound on log p)",
}


def logp_label(estimator: str, space: str = "pixel") -> str:
    """Axis label of an estimator's log p, saying "of the latent z" for a latent model.

    A latent model's (`ScoreModule.space == "latent"`) log p is of its latent, never of pixels:
    "PF-ODE log p(z) of the latent (estimate)".
    """
    label = ESTIMATORS.get(estimator, f"{estimator} log p")
    if space != "latent":
        return label
    return label.replace("log p", "log p(z) of the latent", 1)
