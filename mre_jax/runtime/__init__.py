"""The process a command runs in: JAX's multi-process set-up
(``distributed``), the host memory allocator's policy (``host_memory``) and
installing missing wheels offline (``offline_install``)."""
