"""The command line: ``teleport-argocd-agent`` (``cli``) and its commands ``start``, ``plan`` and
``check``, each wired to the real Teleport and Kubernetes clients (``clients``)."""
