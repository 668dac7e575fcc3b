"""ftspace: `python app.py` serves the app on 127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT
override); pushed to a Hugging Face Space, the same file runs there. FTSPACE_MCP=1 also serves the agents' tools
over the Model Context Protocol at /gradio_api/mcp/."""

from ftspace.ui import build_app, serve

demo = build_app()

if __name__ == "__main__":
    serve(demo)
