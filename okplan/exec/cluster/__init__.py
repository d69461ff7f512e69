"""The cluster executor: a master and workers over ZeroMQ, blocks in Redis.

``client.ClusterExecutor`` is what ``Context("tcp://host:port")`` runs jobs with and
``launcher.LocalCluster`` what ``Context("local-cluster[N]")`` starts; ``master`` and ``worker`` are the
``okplan master`` / ``okplan worker`` programs. See docs/CLUSTER.md and docs/PROTOCOL.md.
"""
