"""Before and after in one run: the previous twin rollout (kept verbatim in the tests) against ``generate.simulate``.

``python -m bench.twin_compare [PARTICIPANTS]`` (default 100) times both on the bench's cohort and settings
(5 interventions + control, 90 days, one sample, batches of 3,000 rows, 1 thread) and checks that the sampled
tokens are identical. The model is ``TWIN_BENCH_MODEL`` when set, else an untrained tiny twin, as in bench/twin.py.
Not in ``make bench``: the previous rollout alone takes about a minute at 1,000 participants.
"""

import sys
import time

import numpy as np
import torch

from bench.twin import DAYS, _model


def main(participants: int) -> None:
    from modeling.ml.data.clinical import INTERVENTIONS
    from modeling.ml.healthformer import generate
    from modeling.ml.healthformer.data import simulated_records
    from tests.modeling.ml.healthformer import previous_generate

    torch.set_num_threads(1)
    model, tokenizer, source = _model()
    records = simulated_records(participants=participants, days=365, seed=12, intervention_probability=0.0).records
    histories = [tokenizer.encode(record) for record in records]
    arguments = dict(arms=[None, *(intervention.name for intervention in INTERVENTIONS)], horizon_days=DAYS, samples=1, seed=0,
                     grid_step_days=DAYS, max_new_tokens=128, batch_rows=3000)
    generate.simulate(model, tokenizer, histories[:20], **{**arguments, "max_new_tokens": 16})  # warm-up
    seconds, rollouts = {}, {}
    for name, module in (("before", previous_generate), ("after", generate)):
        started = time.perf_counter()
        rollouts[name] = module.simulate(model, tokenizer, histories, **arguments)
        seconds[name] = time.perf_counter() - started
    before, after = rollouts["before"], rollouts["after"]
    print(f"model {source}, {participants} participants: before {seconds['before']:.2f} s, after {seconds['after']:.2f} s, "
          f"ratio {seconds['before'] / seconds['after']:.2f}; sampled tokens identical: "
          f"{np.array_equal(before.sampled_ids, after.sampled_ids) and np.array_equal(before.sampled_days, after.sampled_days)}; "
          f"largest expected-value difference {np.abs(before.expected - after.expected).max():.2g}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
