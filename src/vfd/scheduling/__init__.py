"""vfd's scheduling library: what every scheduler needs and none should rewrite.

Pure functions of a :class:`~vfd.plugins.types.Snapshot` (no store, no docker, no clock):

- :mod:`vfd.scheduling.state`: :class:`RoundState`, the in-round view (free resources and
  devices per agent, each user's allocation and live sessions) that placements update;
- :mod:`vfd.scheduling.predicates`: the named checks of a pending session, each returning a
  :class:`~vfd.plugins.types.Verdict`, and :func:`check` running them all;
- :mod:`vfd.scheduling.placement`: best-fit choice of an agent, and the verdicts of every
  session left waiting;
- :mod:`vfd.scheduling.slots`: where a request of accelerator slots goes among a node's
  devices (the same answer for the predicates, best fit, the round and the loop);
- :mod:`vfd.scheduling.simulate`: a snapshot read from JSON run through a scheduler
  (``vfd admin scheduler simulate``).
"""
