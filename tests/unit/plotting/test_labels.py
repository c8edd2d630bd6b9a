"""Axis labels say what a log p is the density of."""

from cartoonist.plotting.labels import ESTIMATORS, logp_label


def test_latent_labels_name_the_latent_and_pixel_labels_are_unchanged():
    for est, label in ESTIMATORS.items():
        assert logp_label(est) == label
        lat = logp_label(est, "latent")
        assert "of the latent" in lat and "log p(z)" in lat
    assert logp_label("tracked", "latent") == "tracked log p(z) of the latent"
