"""The cutover and the rollback: clients move from one server to the other through every PgBouncer, with
client writes held for one short, bounded critical section.

Before the pause (tasks of their own in `pg_cutover`):
- `pre_validation` - the full row diff while streaming, with the change-topic positions it covers;
- `checklist`      - the runbook's go/no-go list (streaming, lag, validation, connectors, PgBouncers,
                     direct sessions, other pauses), pure;
- `backup`         - pg_dump of the source and the connector configs;
- `reverse`        - (`prepare_reverse`) the reverse pipeline's tables and publications.

The critical section (`critical_section.CriticalSection`, one process, one budget) calls, in order:
1. `lease`         - (`pgmigrate.control.pause_lease`) the pause as a row of the control database: created
                     pending, armed at the pause;
   `guard`         - whoever ends it (switch, deadline thread, pause guard in the triggerer) wins one
                     compare-and-set and settles clients where the lease's state says;
   `verification`  - pre-copy passes over the keys changed since the last validation, before pausing;
2. `routing`       - PAUSE every PgBouncer (`routing.fleet`, over `routing.switch` and `routing.routes`);
3. `fence`         - application roles read-only on the origin, their direct sessions ended;
4. `drain`         - every change up to the drain point applied (heartbeat, sink offsets, subscription, slot);
5. `reverse`       - (`stop_connectors`) the origin's capture stopped; its native subscription disabled;
6. `verification`  - the keys changed since the last pass (`change_topics` names them), compared at rest;
7. `sequences`     - (`pgmigrate.cutover.sequences`) destination sequences past the origin's; identities ALWAYS;
8. `reverse`       - (cutover) the reverse slots on the target, the source's identities BY DEFAULT;
9. `fence`         - (`writes_after`) no change committed on the origin after the drain point;
10. `routing`      - every PgBouncer switched, under the lease (`armed -> switched`), then resumed.
Its own parts: `before_pause` (the checks, the guard's wait and the passes before pausing), `after_drain`
(the capture stop of 5, the slot check of 9 and the same check once more after the pause).

After the pause (tasks of their own): reverse connectors (`reverse`), `verify` (a write through every
PgBouncer lands on the target), foreign keys, and the full validation again (`pre_validation`, reverse).
"""
