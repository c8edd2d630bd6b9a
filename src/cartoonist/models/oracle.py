"""`model=oracle`: the exact model (the dataset's own mixture, or a mixture of PPCA fit to it)."""

from __future__ import annotations

from dataclasses import dataclass

from cartoonist.oracles import fit_mppca

__all__ = ["OracleModel"]


@dataclass
class OracleModel:
    """The exact model: the dataset's own mixture, or a mixture of PPCA fitted to its data.

    Args:
        components: mixture components when fitting.
        rank: PPCA rank per component when fitting.
        iters: EM iterations.
    """

    components: int = 8
    rank: int = 4
    iters: int = 30

    def build(self, dm, schedule, seed: int = 0):
        """Return the GaussianMixture for datamodule `dm` under `schedule`."""
        exact = dm.oracle(schedule)
        if exact is not None:
            return exact
        rank = min(self.rank, dm.dim - 1)
        return fit_mppca(
            dm.data, self.components, rank, iters=self.iters, seed=seed, schedule=schedule
        )
