"""The ``isoproof`` verbs, one module per family; :mod:`runtime.engine.cli` imports only the one
a command needs. Each verb is ``cmd_<verb>(engine, argv) -> exit code``: it parses its flags,
asks the :class:`~runtime.engine.engine.Engine` to act and prints the answer.

=================  ==============================================================================
module             verbs
=================  ==============================================================================
``containers``     create, run, start, stop, restart, kill, pause, unpause, rm, wait
``query``          ps, inspect, logs, top, stats
``exec``           exec, attach
``images``         images, import, load, rmi
``system``         network (ls, prune), system prune
=================  ==============================================================================
"""
