"""The dashboard: server-rendered pages at ``/`` with the API's identity and rights.

Nothing here decides anything on its own: every page is built from the API's read
functions (`tenantry.server.reads`) and every button calls the API's action functions
(`tenantry.server.actions`) with a `Caller` proven by the same TokenReview, so a
refusal is the API's refusal (its status, message, right and holders), shown as a page.

    sessions.py   session ids, the server-side store, CSRF tokens
    views.py      the routes: sign-in/out, overview, service page, actions, live events
    templates/    Jinja2 pages; static/  the CSS and the little JavaScript (no CDN)
"""

from tenantry.server.dashboard.views import install

__all__ = ["install"]
