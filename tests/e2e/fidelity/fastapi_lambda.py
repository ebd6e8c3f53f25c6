"""The FastAPI app as a Lambda handler, wrapped with Mangum.

Kept apart from the app: Mangum sets up an event loop when it is built, which the test process (importing the
app to serve it directly) must not get.
"""

from fastapi_app import app  # type: ignore[import-not-found]
from mangum import Mangum

handler = Mangum(app, lifespan="off")
