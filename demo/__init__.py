"""The browser demo (Gradio): layout in app.py, event handlers in handlers.py, drawing in render.py."""
