"""A job as one self-contained HTML page, for sharing and for evaluation reports.

The page is the job page of the dashboard without the player: the same script renders
the same data, with the script, the style and the thumbnail sprite inlined and a
Content-Security-Policy that lets it reach nothing on the network.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from app.core.tree import TreeConfig
from app.services import dashboard, jobs, thumbnails
from app.settings import Settings
from app.web.pages import export_page


def export_job_html(session: Session, settings: Settings, tree_config: TreeConfig,
                    tenant_id: uuid.UUID, job_id: uuid.UUID) -> str:
    """The tenant's job as one HTML string (another tenant's job is not found). Thumbnails
    are made first if the video has none yet; without them the page shows the bands."""
    view = dashboard.job_view(session, tenant_id, job_id, tree_config)
    video = jobs.video_of(session, jobs.get_job(session, tenant_id, job_id))
    sprite = thumbnails.video_sprite(settings, tree_config, video)
    if sprite is not None:
        data = base64.b64encode(sprite.path.read_bytes()).decode("ascii")
        view["thumbnails"] = {**sprite.layout, "sprite": f"data:image/jpeg;base64,{data}"}
    view["exported_at"] = datetime.now(UTC).isoformat()
    title = f"Job: {view['job']['question'][:80]}"
    return export_page(title, view)
