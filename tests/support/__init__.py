"""Code the tests share. Test modules and conftest.py files import from here, and from nowhere
else in tests/: no test module imports another, or a conftest (tests/test_suite_structure.py
checks it). Fixtures stay in the conftest.py files and call these functions.

- ``cli``: the command line in-process (``cli``) or as the real program (``run``, ``killed``),
  ``isolated_env``, ``GAPSYNC``, ``ARCH``.
- ``channels``: ``new_channel``, ``write_spec``, ``create``, ``sync``, ``carried``, ``model_bundle``.
- ``wheels``: tiny real wheels (``make_wheel``) and PEP 503 indexes of them (``write_index``).
- ``trees``: ``snapshot``, a directory compared byte for byte.
- ``servers``: ``Server`` (a subprocess on 127.0.0.1, stopped by PID), ``free_port``,
  ``static_server``, ``serve_dir``, ``hostile_upstream``; the server scripts are beside it.
- ``raw_http``: raw HTTP/1.1 over a socket, for the requests hostile clients send.
- ``hostile_bundles``: a bundle rewritten member by member; ``assert_refused``.
- ``data``: where the suite's data lives in the repository (the model corpus, the advisories).
- ``oci``, ``oci_artifacts``: image layouts, real registries, skopeo, Helm charts, signatures.
- ``models``, ``datasets``: the Hub stand-in and its repos.
- ``conda``: the upstream channel of real packages and the air side's consumer
  (``scripts/``: run in processes of their own).
- ``samples``, ``benign_models``, ``allowlist``: scanner inputs, hostile and benign.
- ``sbom_example``: one example bundle.json for the SBOM and the report.
"""
