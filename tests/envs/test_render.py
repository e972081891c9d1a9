"""Frustum culling (`render.in_view`, `render.update_scene`): what it leaves out, and that images do not change."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from vlaforge.envs import render as R

# A camera 1 m above the floor looking straight down (45 degree fovy), and spheres around it.
SCENE = """
<mujoco>
  <worldbody>
    <light pos="0 0 3"/>
    <geom name="floor" type="plane" size="2 2 0.1" rgba="0.3 0.3 0.3 1"/>
    <camera name="down" pos="0 0 1" fovy="45"/>
    <geom name="below" type="sphere" pos="0 0 0.1" size="0.05" rgba="1 0 0 1"/>
    <geom name="behind" type="sphere" pos="0 0 1.5" size="0.05" rgba="0 1 0 1"/>
    <geom name="aside" type="sphere" pos="1.5 0 0.1" size="0.05" rgba="0 0 1 1"/>
    <geom name="edge" type="sphere" pos="0.42 0 0.1" size="0.06" rgba="1 1 0 1"/>
    <geom name="corner" type="box" pos="-0.38 0.38 0.1" size="0.03 0.03 0.03" rgba="1 0 1 1"/>
    <geom name="far_y" type="sphere" pos="0 -1.0 0.1" size="0.05" rgba="0 1 1 1"/>
  </worldbody>
</mujoco>
"""


@pytest.fixture(scope="module")
def scene():
    model = mujoco.MjModel.from_xml_string(SCENE)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    renderer = R.make_renderer(model, 64)
    yield model, data, renderer
    renderer.close()


def test_in_view_keeps_what_the_frustum_can_reach_and_every_plane(scene):
    model, data, _ = scene
    seen = R.in_view(model, data, model.camera("down").id)
    verdict = {model.geom(g).name: bool(seen[g]) for g in range(model.ngeom)}
    # at 0.9 m depth the half-width of the view is 0.9 * tan(22.5 deg) = 0.373 m
    assert verdict == {"floor": True, "below": True, "behind": False, "aside": False,
                       "edge": True, "corner": True, "far_y": False}  # fmt: skip


def test_culled_scene_renders_the_same_image_with_fewer_geoms(scene):
    model, data, renderer = scene
    renderer.update_scene(data, camera="down")
    full, drawn_all = renderer.render(), renderer.scene.ngeom
    R.update_scene(renderer, data, "down")
    culled, drawn = renderer.render(), renderer.scene.ngeom
    np.testing.assert_array_equal(culled, full)
    assert (drawn_all, drawn) == (7, 4)
    assert list(model.geom_group) == [0] * 7  # groups are restored after the scene is built
    edge = model.geom("edge").id
    model.geom_group[edge] = 5  # the sphere at the image's edge is really in the image: hiding it shows
    renderer.update_scene(data, camera="down")
    assert not np.array_equal(renderer.render(), full)
    model.geom_group[edge] = 0
    R.update_scene(renderer, data, "down", cull=False)
    assert renderer.scene.ngeom == 7
    with pytest.raises(ValueError, match="does not exist"):
        R.update_scene(renderer, data, "nope")


def test_orthographic_and_intrinsic_cameras_are_never_culled(scene):
    model, data, _ = scene
    cam = model.camera("down").id
    model.cam_orthographic[cam] = 1
    try:
        assert R.in_view(model, data, cam).all()
    finally:
        model.cam_orthographic[cam] = 0
    model.cam_sensorsize[cam] = (0.01, 0.01)
    try:
        assert R.in_view(model, data, cam).all()
    finally:
        model.cam_sensorsize[cam] = (0.0, 0.0)


def test_wrist_cameras_of_aloha_and_metaworld_render_the_same_culled():
    from vlaforge.envs.aloha import AlohaEnv
    from vlaforge.envs.metaworld import MetaWorldEnv

    aloha = AlohaEnv("transfer-cube", cameras=("top",), image_size=48)
    world = MetaWorldEnv("pick-place-v3", cameras=("corner2",), image_size=48)
    try:
        for env, model, data, renderer, cams in (
            (aloha, aloha._model, aloha._data, aloha._renderer, ("left_wrist", "top")),
            (world, world._env.model, world._env.data, world._renderer, ("gripperPOV", "corner2")),
        ):
            env.reset(1)
            rng, culled = np.random.default_rng(0), 0
            for _ in range(8):
                for cam in cams:
                    renderer.update_scene(data, camera=cam)
                    full = renderer.render()
                    R.update_scene(renderer, data, cam)
                    np.testing.assert_array_equal(renderer.render(), full)
                    culled += int((~R.in_view(model, data, model.camera(cam).id)).sum())
                action = np.zeros(14) if env is aloha else rng.uniform(-1, 1, 4)  # ALOHA: joints to 0
                for _ in range(5):
                    env.step(action, render=False)
            assert culled > 0  # the wrist views leave geoms out
    finally:
        aloha.close(), world.close()
