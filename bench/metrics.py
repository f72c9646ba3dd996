"""What the server says about itself: its Prometheus /metrics, read before and after each load, so
the model's busy time and batch shapes are measured, not guessed."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass

# Summed over labels (one model is served in the bench).
WANTED = (
    "tokvec_forward_seconds_sum",
    "tokvec_forward_seconds_count",
    "tokvec_batch_spans_sum",
    "tokvec_batch_spans_count",
    "tokvec_queue_wait_seconds_sum",
    "tokvec_queue_wait_seconds_count",
    "tokvec_padding_efficiency",
    "tokvec_prep_seconds_sum",
    "tokvec_prep_seconds_count",
)


def scrape(url: str) -> dict[str, float]:
    """The WANTED samples of a Prometheus text page; a name the server does not export is absent."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        if name in WANTED:
            out[name] = out.get(name, 0.0) + float(value)
    return out


@dataclass(frozen=True)
class Delta:
    """What the server did between two scrapes."""

    batches: float
    forward_s: float
    spans: float
    queue_wait_s: float

    @classmethod
    def between(cls, before: dict[str, float], after: dict[str, float]) -> Delta | None:
        if "tokvec_forward_seconds_sum" not in after:
            return None
        d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in WANTED}
        return cls(
            d["tokvec_forward_seconds_count"],
            d["tokvec_forward_seconds_sum"],
            d["tokvec_batch_spans_sum"],
            d["tokvec_queue_wait_seconds_sum"],
        )

    def summary(self, wall_s: float) -> dict[str, float]:
        batches = max(self.batches, 1.0)
        return {
            "batches": self.batches,
            "spans_per_batch": self.spans / batches,
            "forward_ms_per_batch": 1000 * self.forward_s / batches,
            "model_busy": self.forward_s / wall_s,
            "queue_wait_ms_mean": 1000 * self.queue_wait_s / max(self.spans, 1.0),
        }
