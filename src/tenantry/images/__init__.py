"""Container images without a registry: the pause and test-app images of the real nodes.

`oci` is pure (an OCI image layout as bytes); `build` compiles the programs, caches
the archives under ``~/.cache/tenantry/images`` and imports them into a node's
containerd with ``ctr``.
"""
