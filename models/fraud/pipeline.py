"""The fraud flow's steps in a plain loop (:class:`FraudPipeline`): tests, benchmarks and backfills."""

from __future__ import annotations

import time
from typing import Any, Iterable, Mapping, Sequence

from features.records import DeadLetter, batch_or_dead_letters, parse_or_dead_letter, shard_of
from features.store import CachedLookup
from features.transactions import (
    Transaction,
)
from models.fraud.artifact import FraudModel
from models.fraud.config import FraudScoringConfig
from models.fraud.scorer import FraudScorer
from models.fraud.state import CustomerState, ShardState
from models.serving import ModelRouter

__all__ = ["FraudPipeline"]



class FraudPipeline:
    """The fraud flow in a plain loop: the same steps, classes and order as
    ``dataflows.fraud``, for tests, benchmarks and backfills (one process, no engine).

    ``parse`` -> ``customer_step`` (:class:`CustomerState` per customer) ->
    ``shard_step`` (:class:`ShardState` per ``shard_of(customer_id, cfg.shards)``)
    -> ``score`` (:meth:`FraudScorer.score_batch`). :meth:`process` runs them on a
    batch; refused inputs and batches whose scoring raised become
    :class:`~features.records.DeadLetter` in place, as in the flow.
    :meth:`snapshot` / :meth:`load` save and restore every state object.

    >>> import numpy as np
    >>> from features.store import MERCHANT_DEFAULTS, PROFILE_DEFAULTS
    >>> class Model:  # anything with a version, predict and explain
    ...     version = "demo/1"
    ...     def predict(self, X): return np.full(len(X), 0.1)
    ...     def explain(self, X, top=3): return [[] for _ in X]
    >>> nowhere = lambda keys: {}   # a feature store that knows nobody
    >>> pipe = FraudPipeline(FraudScoringConfig(), Model(),
    ...                      CachedLookup(nowhere, PROFILE_DEFAULTS), CachedLookup(nowhere, MERCHANT_DEFAULTS))
    >>> out = pipe.process([b'{"transaction_id": "t1", "customer_id": "C1", "merchant_id": "M1", "error": "none",'
    ...     b' "merchant_category": "gas", "amount": 12, "latitude": 1, "longitude": 2, "timestamp": 0}',
    ...     b'{"transaction_id": "t2"}'])
    >>> rec, dead = out
    >>> rec["status"], rec["fraud_score"], rec["customer_known"], rec["error"], rec["anomaly_score"]
    ('NORMAL', 0.1, False, 'none', None)
    >>> dead.error
    "field 'customer_id': missing"
    """

    def __init__(
        self,
        cfg: FraudScoringConfig,
        model: FraudModel | ModelRouter | None = None,
        customers: CachedLookup | None = None,
        merchants: CachedLookup | None = None,
    ) -> None:
        self.cfg = cfg
        # without a model (and lookups): the stateful steps only (:meth:`steps`)
        self.scorer = None if model is None else FraudScorer(model, customers, merchants, cfg)
        self.customer_states: dict[str, CustomerState] = {}
        self.shard_states: dict[int, ShardState] = {}

    def parse(self, raw: Any, arrival: float) -> Transaction | DeadLetter:
        """:meth:`FraudScoringConfig.parse` (the flow's parser, with its bounds), or a
        dead letter naming why not, as the flow's validate step does."""
        return parse_or_dead_letter(raw, self.cfg.parse, arrival)

    def customer_step(self, tx: Transaction) -> Transaction | DeadLetter:
        state = self.customer_states.get(tx.customer_id)
        if state is None:
            state = self.customer_states[tx.customer_id] = CustomerState(self.cfg)
        return state.update(tx)

    def customer_step_many(self, txs: Sequence[Transaction]) -> list[Transaction | DeadLetter]:
        """The customer step as the flow runs it: each customer's transactions of the
        batch, in order, through :meth:`CustomerState.update_many` at once; results in
        input order."""
        by_customer: dict[str, list[int]] = {}
        for i, tx in enumerate(txs):
            by_customer.setdefault(tx.customer_id, []).append(i)
        out: list[Any] = [None] * len(txs)
        for customer, idx in by_customer.items():
            state = self.customer_states.get(customer)
            if state is None:
                state = self.customer_states[customer] = CustomerState(self.cfg)
            for i, r in zip(idx, state.update_many([txs[i] for i in idx])):
                out[i] = r
        return out

    def shard_step(self, tx: Transaction) -> Transaction:
        shard = shard_of(tx.customer_id, self.cfg.shards)
        state = self.shard_states.get(shard)
        if state is None:
            state = self.shard_states[shard] = ShardState(self.cfg)
        return state.update(tx)

    def shard_step_many(self, txs: Sequence[Transaction]) -> list[Transaction]:
        """The shard step as the flow runs it: each shard's transactions of the batch,
        in order, through :meth:`ShardState.update_many` at once."""
        by_shard: dict[int, list[Transaction]] = {}
        for tx in txs:
            by_shard.setdefault(shard_of(tx.customer_id, self.cfg.shards), []).append(tx)
        for shard, group in by_shard.items():
            state = self.shard_states.get(shard)
            if state is None:
                state = self.shard_states[shard] = ShardState(self.cfg)
            state.update_many(group)
        return list(txs)

    def score(self, txs: Sequence[Transaction]) -> list[dict[str, Any] | DeadLetter]:
        if self.scorer is None:
            raise ValueError("FraudPipeline built without a model scores nothing: use steps()")
        return batch_or_dead_letters(self.scorer.score_batch, list(txs), lambda tx: tx.fields, "score")

    def steps(self, batch: Iterable[Any], arrival: float | None = None) -> list[Transaction | DeadLetter]:
        """The stateful steps on a batch of raw inputs (parse, customer, shard), no
        scoring: the transactions with their features and anomaly scores, or dead
        letters, one per input, in input order."""
        arrival = time.time() if arrival is None else arrival
        parsed = [self.parse(raw, arrival) for raw in batch]
        new = iter(self.customer_step_many([x for x in parsed if not isinstance(x, DeadLetter)]))
        featured = [x if isinstance(x, DeadLetter) else next(new) for x in parsed]
        self.shard_step_many([x for x in featured if not isinstance(x, DeadLetter)])
        return featured

    def process(self, batch: Iterable[Any], arrival: float | None = None) -> list[dict[str, Any] | DeadLetter]:
        """Score a batch of raw inputs; one output per input, in input order."""
        featured = self.steps(batch, arrival)
        scored = iter(self.score([x for x in featured if not isinstance(x, DeadLetter)]))
        return [x if isinstance(x, DeadLetter) else next(scored) for x in featured]

    def snapshot(self) -> dict[str, Any]:
        """Every state's snapshot: ``{"customers": {id: ...}, "shards": {n: ...}}``."""
        return {
            "customers": {k: s.snapshot() for k, s in self.customer_states.items()},
            "shards": {k: s.snapshot() for k, s in self.shard_states.items()},
        }

    def load(self, snap: Mapping[str, Any]) -> None:
        """Restore :meth:`snapshot` output into states built from this pipeline's configuration."""
        self.customer_states = {}
        for key, s in snap["customers"].items():
            state = self.customer_states[key] = CustomerState(self.cfg)
            state.load(s)
        self.shard_states = {}
        for key, s in snap["shards"].items():
            shard = self.shard_states[key] = ShardState(self.cfg)
            shard.load(s)
