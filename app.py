"""ftspace: `python app.py` serves the app on 127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT
override); pushed to a Hugging Face Space, the same file runs there. FTSPACE_MCP=1 also serves the agents' tools
over the Model Context Protocol at /gradio_api/mcp/."""

from ftspace.ui import build_app, mcp_enabled, queue_settings
from ftspace.ui.common import UPLOAD_LIMIT_MB

demo = build_app()

if __name__ == "__main__":
    demo.queue(**queue_settings()).launch(max_file_size=f"{UPLOAD_LIMIT_MB}mb", run_history=False,
                                                  mcp_server=mcp_enabled())
