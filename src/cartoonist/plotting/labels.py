"""Labels of the log p estimators in figures and tables, best estimator first."""

__all__ = ["ESTIMATORS"]

# The estimators a figure may compare samples with, best first, and their labels.
ESTIMATORS = {
    "exact": "exact log p",
    "pf_ode": "PF-ODE log p (estimate)",
    "elbo": "ELBO (lower bound on log p)",
}
