"""The job kinds, one module per family; importing this package registers them all.

A model issue adds its module here: a form, a queue rule and a run function per kind. Rooms above ``modeling``
(the agent, evaluation) register their kinds from their app's ``ready()``.
"""

from modeling.kinds import cohort_import, demo, heads, lsm, sensorlm, twin  # noqa: F401 - registration on import
