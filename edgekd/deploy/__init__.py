"""deploy: build every candidate artifact a target allows, measure each, pick the fastest in budget.

``candidates`` (which runtime/precision pairs a target can run here, and why not the others),
``build`` (the artifact each candidate needs: ONNX, INT8 QDQ, OpenVINO IR, NNCF INT8 IR),
``cache`` (built artifacts and measurements keyed by content hashes), ``measure`` (the bench
harness, local or over SSH), ``choose`` (the selection rule, a pure function of the figures),
``report`` (deploy.json, the winner file, the terminal and Markdown tables) and ``run``
(:func:`deploy_student`, the whole flow). See docs/deploy.md.
"""
