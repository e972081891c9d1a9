"""Fast offscreen MuJoCo rendering, identical at collection and evaluation.

`make_renderer(model, size)` is the one place render settings live: shadows (`shadowsize = 0`),
multisampling (`offsamples = 0`), reflections and the skybox are off. On one 2-core-laptop core this
takes Meta-World from ~9-80 frames/s (defaults) to ~115 frames/s at 128 px. Datasets and evaluation
must use the same settings, or a policy sees a different image distribution at test time.

Orientation: Meta-World's corner cameras are mounted upside down, so their raw renders are rotated by
180 degrees. LeRobot flips `corner2` on both axes; we do the same for `corner2` and also for the other
upside-down corner cameras (`corner`, `corner3`, `corner4`), which LeRobot leaves as rendered (a
deliberate deviation: every camera we return is upright). `corner2` is moved where LeRobot moves it.

`render_copy(model, keep, keep_near=...)` gives a render-only copy of a model with its drawn meshes
decimated (for scenes such as robosuite's arms, whose CAD meshes cost the software rasterizer most of
a frame), less so where a wrist camera looks at its own hand; the physics model is untouched.

`update_scene(renderer, data, camera, option)` leaves out of the scene the geoms whose bounding sphere
lies wholly outside the camera's view frustum (shadows and reflections are off, so such a geom puts
no pixel in the image): the same image, bitwise (tested), for less of the rasterizer's per-vertex
work (the arm links behind a wrist camera, robosuite's side walls and pedestal outside its agentview).

`CropView(camera, center, half)` names a view that is a square crop of a fixed camera's upright image
(a longer lens on the same camera): `render(renderer, data, view)` draws it straight at the renderer's
size through the camera's intrinsics (sensor size and principal point), so it costs what the full
view costs and is, bitwise, the crop of that camera rendered at `size / half` pixels (tested).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

#: Cameras whose raw image is upside down and is rotated by 180 degrees (flip on both axes).
FLIPPED_CAMERAS = frozenset({"corner", "corner2", "corner3", "corner4"})
#: LeRobot's corner2 position (closer to the table, as in arXiv:2206.14244), orientation unchanged.
CORNER2_POS = (0.75, 0.075, 0.7)
#: Scene flags turned off for speed.
_OFF_FLAGS = (
    mujoco.mjtRndFlag.mjRND_SHADOW,
    mujoco.mjtRndFlag.mjRND_REFLECTION,
    mujoco.mjtRndFlag.mjRND_SKYBOX,
)


def camera_names(model: mujoco.MjModel) -> list[str]:
    """All camera names of a model."""
    return [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam)]


def place_cameras(model: mujoco.MjModel) -> None:
    """Move `corner2` to LeRobot's position (idempotent)."""
    cam = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "corner2")
    if cam >= 0:
        model.cam_pos[cam] = CORNER2_POS


def make_renderer(model: mujoco.MjModel, size: int) -> mujoco.Renderer:
    """A square offscreen renderer with the fast settings (must be called before any other renderer)."""
    model.vis.quality.shadowsize = 0
    model.vis.quality.offsamples = 0
    model.vis.global_.offwidth = max(model.vis.global_.offwidth, size)
    model.vis.global_.offheight = max(model.vis.global_.offheight, size)
    renderer = mujoco.Renderer(model, height=size, width=size)
    for flag in _OFF_FLAGS:
        renderer.scene.flags[flag] = 0
    return renderer


#: Frustum culling's slack on a geom's bounding sphere (`geom_rbound`, computed for the full mesh):
#: radius x 1.2 + 1 cm, for the vertices a decimated mesh may place a little outside it.
CULL_SCALE, CULL_PAD = 1.2, 0.01
_DEFAULT_OPTION = mujoco.MjvOption()  # what mujoco.Renderer.update_scene uses when given none


def in_view(model: mujoco.MjModel, data: mujoco.MjData, camera: int) -> np.ndarray:
    """bool [ngeom]: the geoms whose (padded) bounding sphere may reach fixed `camera`'s square image.

    MuJoCo's fixed cameras look along their frame's -z with +y up and `cam_fovy` the vertical field
    of view (the horizontal one for a square image). Conservative: planes (rbound 0: infinite) and
    every geom of an orthographic camera or one given by intrinsics (sensor size) count as in view.
    """
    ngeom = model.ngeom
    if model.cam_orthographic[camera] or np.any(model.cam_sensorsize[camera] > 0):
        return np.ones(ngeom, dtype=bool)
    rot = data.cam_xmat[camera].reshape(3, 3)  # [3, 3] columns: camera x, y, z in world
    local = (data.geom_xpos - data.cam_xpos[camera]) @ rot  # [ngeom, 3] camera frame
    depth = -local[:, 2]  # [ngeom] along the view direction
    radius = model.geom_rbound * CULL_SCALE + CULL_PAD  # [ngeom]
    half = np.deg2rad(model.cam_fovy[camera]) / 2
    cos, sin = np.cos(half), np.sin(half)
    outside = (
        (np.abs(local[:, 0]) * cos - depth * sin > radius)  # beyond the left or right plane
        | (np.abs(local[:, 1]) * cos - depth * sin > radius)  # beyond the top or bottom plane
        | (depth < -radius)  # wholly behind the camera
    )
    return ~outside | (model.geom_rbound == 0)


def update_scene(
    renderer: mujoco.Renderer,
    data: mujoco.MjData,
    camera: str,
    option: mujoco.MjvOption | None = None,
    *,
    cull: bool = True,
) -> None:
    """`renderer.update_scene(data, camera, option)` without the geoms `in_view` rules out.

    They are hidden through their group for the scene's construction only (a group `option` hides;
    `geom_group` has no effect on physics) and restored at once. `data` must be of the renderer's
    model or of one with the same bodies and geoms (`render_copy`). `cull=False` draws every geom
    (the same image; for the benchmarks).
    """
    model = renderer.model
    option = option if option is not None else _DEFAULT_OPTION
    cam = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
    hidden = next((g for g in range(5, -1, -1) if not option.geomgroup[g]), None)  # a group it hides
    if not cull or cam < 0 or hidden is None:  # an unknown name: let update_scene raise its own error
        renderer.update_scene(data, camera=camera, scene_option=option)
        return
    groups = model.geom_group.copy()  # [ngeom]
    model.geom_group[:] = np.where(in_view(model, data, cam), groups, hidden)
    try:
        renderer.update_scene(data, camera=camera, scene_option=option)
    finally:
        model.geom_group[:] = groups


@dataclass(frozen=True)
class CropView:
    """A square crop of fixed camera `camera`'s upright image, rendered at the full output size.

    `center` is the crop's centre (column, row) in the upright image, each in [-1, 1] (-1: the left
    or top edge); `half` is its half-side as a fraction of the image's (0 < half <= 1; the crop must
    lie inside the image). Magnification 1 / half; the camera's pose is unchanged.
    """

    camera: str
    center: tuple[float, float]
    half: float

    def __post_init__(self) -> None:
        col, row = self.center
        if not 0 < self.half <= 1 or abs(col) + self.half > 1 + 1e-9 or abs(row) + self.half > 1 + 1e-9:
            raise ValueError(f"crop {self} does not lie inside the camera's image")


def render(renderer: mujoco.Renderer, data: mujoco.MjData, camera: str | CropView) -> np.ndarray:
    """One upright uint8 [H, W, 3] image from `camera` (a camera name or a `CropView` of one)."""
    if isinstance(camera, CropView):
        return _render_crop(renderer, data, camera)
    update_scene(renderer, data, camera)
    image = renderer.render()  # [H, W, 3] uint8, raw orientation
    if camera in FLIPPED_CAMERAS:
        image = np.ascontiguousarray(image[::-1, ::-1])
    return image


def _render_crop(renderer: mujoco.Renderer, data: mujoco.MjData, view: CropView) -> np.ndarray:
    """`view` through its camera's intrinsics, set for this frame only.

    MuJoCo's intrinsics camera: focal length f, sensor side s, principal point (px, py) in one length
    unit; its image spans tan = (+-s/2 + p) / f about the optical axis, with +py up in the raw image.
    The camera's own fovy gives its full sensor side at f = 1 (2 tan(fovy / 2)); the crop keeps f and
    takes `half` of that side, centred where the crop is (mirrored for the upside-down cameras).
    """
    model = renderer.model
    cam = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, view.camera)
    if cam < 0 or model.cam_orthographic[cam] or np.any(model.cam_sensorsize[cam] > 0):
        raise ValueError(f"{view}: its camera must be a perspective camera given by fovy")
    side = 2 * np.tan(np.deg2rad(model.cam_fovy[cam]) / 2)  # full sensor side at focal length 1
    col, row = view.center
    if view.camera in FLIPPED_CAMERAS:  # upright = raw rotated by 180 degrees
        col, row = -col, -row
    sensor, intrinsic = model.cam_sensorsize[cam].copy(), model.cam_intrinsic[cam].copy()
    model.cam_sensorsize[cam] = (view.half * side, view.half * side)
    model.cam_intrinsic[cam] = (1.0, 1.0, col * side / 2, -row * side / 2)
    try:
        image = render(renderer, data, view.camera)  # [H, W, 3] uint8, upright
    finally:
        model.cam_sensorsize[cam], model.cam_intrinsic[cam] = sensor, intrinsic
    return image


#: Meshes with fewer faces than this are left as they are by `render_copy`.
MIN_FACES = 500
#: Angle between a face and a vertex's mean normal beyond which the face is shaded flat there.
CREASE_DEG = 60.0
#: Simplified (vertices, faces, corner normals) per (mesh content, keep): collection workers build several
#: envs of one scene, and a mesh is simplified once per process.
_SIMPLIFIED: dict[tuple[bytes, float], tuple[np.ndarray, ...]] = {}


def drawn_meshes(model: mujoco.MjModel) -> list[int]:
    """Ids of the meshes that visual geoms draw (geom group != 0; group 0 holds the collision geoms our
    renderers hide)."""
    geoms = np.flatnonzero((model.geom_type == mujoco.mjtGeom.mjGEOM_MESH) & (model.geom_group != 0))
    return sorted(set(model.geom_dataid[geoms].tolist()))


def camera_meshes(model: mujoco.MjModel) -> set[int]:
    """Ids of the drawn meshes on moving bodies that carry a camera or hang below one: a wrist camera
    sees its own hand at a few centimetres, where a decimated mesh shows its facets. (Cameras on
    bodies welded to the world, e.g. robosuite's `robotview` on the robot's base, do not count.)"""
    bodies = model.cam_bodyid[model.body_weldid[model.cam_bodyid] != 0]
    carriers = set(bodies.tolist())
    below = np.zeros(model.nbody, bool)  # [nbody] body is a carrier or a descendant of one
    for b in range(1, model.nbody):  # parents come before their children in a compiled model
        below[b] = b in carriers or below[model.body_parentid[b]]
    geoms = np.flatnonzero((model.geom_type == mujoco.mjtGeom.mjGEOM_MESH) & (model.geom_group != 0))
    return {int(model.geom_dataid[g]) for g in geoms if below[model.geom_bodyid[g]]}


def _textured(model: mujoco.MjModel, mesh_id: int) -> bool:
    mats = model.geom_matid[(model.geom_type == mujoco.mjtGeom.mjGEOM_MESH) & (model.geom_dataid == mesh_id)]
    return any(m >= 0 and int(model.mat_texid[m].max()) >= 0 for m in mats)


def _weld(verts: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge bitwise-equal vertices (compiled meshes repeat a vertex per normal or texture coordinate,
    which leaves a decimator nothing to collapse) and drop the faces that become degenerate."""
    unique, inverse = np.unique(verts, axis=0, return_inverse=True)  # [V', 3], [V]
    faces = inverse.reshape(-1)[faces]  # [F, 3]
    keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    return unique, faces[keep]


def _corner_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit normals per face corner [F, 3, 3], smooth except across creases: a face whose normal is
    more than `CREASE_DEG` from a vertex's area-weighted mean normal keeps its own flat normal there
    and is left out of that vertex's mean (the rule MuJoCo's compiler applies to meshes without
    normals, `smoothnormal="false"`)."""
    tri = verts[faces]  # [F, 3 corners, 3]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # [F, 3], length = 2 x area
    unit_n = face_n / np.maximum(np.linalg.norm(face_n, axis=1, keepdims=True), 1e-12)  # [F, 3]

    def vertex_mean(take: np.ndarray) -> np.ndarray:  # take: [F, 3] bool -> unit [V, 3]
        acc = np.zeros_like(verts)
        for corner in range(3):
            np.add.at(acc, faces[take[:, corner], corner], face_n[take[:, corner]])
        return acc / np.maximum(np.linalg.norm(acc, axis=1, keepdims=True), 1e-12)

    mean = vertex_mean(np.ones(faces.shape, bool))[faces]  # [F, 3, 3]
    smooth = (mean * unit_n[:, None]).sum(-1) > np.cos(np.radians(CREASE_DEG))  # [F, 3]
    mean = vertex_mean(smooth)[faces]  # [F, 3, 3], over the faces that agree
    return np.where(smooth[..., None], mean, unit_n[:, None])  # [F, 3, 3]


def _simplify(verts: np.ndarray, faces: np.ndarray, keep: float) -> tuple[np.ndarray, ...]:
    """Weld, decimate to about `keep` of the faces (quadric error), and give corner normals:
    (vertices [V', 3], faces [F', 3], distinct normals [N, 3], each corner's normal id [F', 3])."""
    import fast_simplification

    key = (hashlib.blake2b(verts.tobytes() + faces.tobytes(), digest_size=16).digest(), keep)
    if key not in _SIMPLIFIED:
        v, f = _weld(verts, faces)
        v, f = fast_simplification.simplify(v, f, target_reduction=1.0 - keep)  # [V', 3], [F', 3]
        normals, corner = np.unique(_corner_normals(v, f).reshape(-1, 3), axis=0, return_inverse=True)
        _SIMPLIFIED[key] = (v, f.astype(np.int32), normals, corner.reshape(-1, 3).astype(np.int32))
    return _SIMPLIFIED[key]


#: Model fields a simulator may change at run time that change the picture (robosuite's `visualize()`
#: sets geom and site colours at every reset), and the bounding radii culling reads (`in_view`);
#: `sync_copy` carries them into a render copy.
APPEARANCE = (
    "geom_rgba", "geom_matid", "geom_size", "geom_pos", "geom_quat", "site_rgba", "site_size", "site_pos",
    "mat_rgba", "body_pos", "body_quat", "cam_pos", "cam_quat", "cam_fovy", "light_pos", "light_dir",
    "light_diffuse", "light_active", "geom_rbound",
)  # fmt: skip


def sync_copy(model: mujoco.MjModel, copy_: mujoco.MjModel) -> None:
    """Copy the `APPEARANCE` fields of `model` into its render copy (no-op when they are one model)."""
    if copy_ is not model:
        for field in APPEARANCE:
            np.copyto(getattr(copy_, field), getattr(model, field))


def render_copy(
    model: mujoco.MjModel, keep: float, *, keep_near: float | None = None
) -> tuple[mujoco.MjModel, tuple[int, int]]:
    """A copy of `model` for rendering only, its drawn meshes decimated to about `keep` of their faces
    (`keep_near` for the meshes a wrist camera sees up close, `camera_meshes`, when given).

    The physics model is not touched: the copy has the same bodies, geoms and cameras, so a renderer
    made on it draws any `MjData` of `model` (`renderer.update_scene(data)`); call `sync_copy` before
    drawing so that run-time colour and placement changes to `model` show. Textured meshes and meshes
    under `MIN_FACES` faces keep every face (a decimated mesh loses its texture coordinates); each
    decimated mesh is rewritten within its own slots (fewer vertices, faces and normals; corner
    normals, smooth but for creases). `keep >= 1` returns `model` itself. Deterministic: the same
    model and arguments give the same meshes (and images) in every process. Returns the copy and
    (triangles before, after) over the drawn meshes.
    """
    if keep <= 0.0:
        raise ValueError(f"keep must be > 0, got {keep}")
    meshes = drawn_meshes(model)
    before = int(sum(model.mesh_facenum[m] for m in meshes))
    if keep >= 1.0:
        return model, (before, before)
    near = camera_meshes(model) if keep_near is not None else set()
    model = copy.deepcopy(model)
    for mid in meshes:
        fraction = max(keep, keep_near) if mid in near else keep
        if fraction >= 1.0:
            continue
        vadr, vnum = int(model.mesh_vertadr[mid]), int(model.mesh_vertnum[mid])
        fadr, fnum = int(model.mesh_faceadr[mid]), int(model.mesh_facenum[mid])
        if fnum < MIN_FACES or _textured(model, mid):
            continue
        verts = model.mesh_vert[vadr : vadr + vnum].astype(np.float64)  # [V, 3] mesh frame
        faces = model.mesh_face[fadr : fadr + fnum].astype(np.int64)  # [F, 3] local vertex ids
        v, f, n, corner = _simplify(verts, faces, fraction)
        if len(v) > vnum or len(n) > int(model.mesh_normalnum[mid]) or len(f) > fnum:  # no room: keep it
            continue
        nadr = int(model.mesh_normaladr[mid])
        model.mesh_vert[vadr : vadr + len(v)] = v
        model.mesh_normal[nadr : nadr + len(n)] = n
        model.mesh_face[fadr : fadr + len(f)] = f
        model.mesh_facenormal[fadr : fadr + len(f)] = corner
        model.mesh_vertnum[mid], model.mesh_normalnum[mid], model.mesh_facenum[mid] = len(v), len(n), len(f)
        model.mesh_texcoordadr[mid], model.mesh_texcoordnum[mid] = -1, 0
    return model, (before, int(sum(model.mesh_facenum[m] for m in meshes)))
