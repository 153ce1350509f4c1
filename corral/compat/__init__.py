"""Drop-ins for people coming from the Werkzeug development server and the Flask CLI."""
