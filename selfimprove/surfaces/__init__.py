"""What people and assistants touch: the CLI (:mod:`.cli`), seed 000's integration facade
(:mod:`.integration`), the MCP server (:mod:`.mcp_server`) and the reports (:mod:`.report`).

Nothing below imports from here.
"""
