"""Two-Rooms: point navigation between two rooms joined by a door (the protocol of PLDM).

PLDM (Sobal et al. 2025) plans to a goal image in a 64×64 world of a dot and a wall; this is
that task, in numpy alone. The picture, in pixel coordinates (pixel ``(row y, column x)`` has
its centre at the point ``(x, y)`` and covers ``[x - 0.5, x + 0.5] × [y - 0.5, y + 0.5]``)::

    border   1-pixel lines at rows and columns 4 and 60
    wall     columns wall_x - 1 .. wall_x + 1 (fixed: 31..33), rows 5..59
    door     rows door_y - 4 .. door_y + 4 of the wall are open (fixed: 6..14)

The agent is a point that keeps half a pixel from every wall pixel: it lives in
``[5, 59] × [5, 59]``, stops at ``x = wall_x - 2`` or ``wall_x + 2`` against the wall, and goes
through the door when its ``y`` lies in ``[door_y - 4, door_y + 4]``. With ``random_wall`` each
episode draws ``wall_x`` from ``[20, 44]`` and ``door_y`` from ``[10, 54]`` (the EB-JEPA
variant); otherwise the wall is PLDM's fixed one, ``wall_x = 32`` and ``door_y = 10``.

An action is a displacement ``(dx, dy)`` in pixels. One longer than ``MAX_STEP_NORM`` (2.45,
PLDM's bound) is scaled down to that length, keeping its heading. A move whose straight
segment would enter a wall or leave the border stops where it first touches it (no sliding
along the wall); the segment is tested against each wall rectangle exactly, so no move,
however diagonal, passes a door's corner. Unlike PLDM's evaluation env, which adds noise at
collisions, the dynamics here are deterministic.

Observations are uint8 ``[64, 64, 3]``: channel 0 is the agent, a Gaussian blob
``255 * exp(-d^2 / (2 * 1.3^2))`` around its real-valued position; channels 1 and 2 are the
walls (255 on wall pixels), so walls look cyan and the agent red on black.

The task: ``reset`` puts the start and the goal in opposite rooms (each at least ``2 * 1.3``
px from every wall), ``render_goal()`` is the goal image a planner is given, and an episode
succeeds when the agent comes within ``success_radius`` of the goal (PLDM's "mean squared x/y
error below 1", i.e. a distance below sqrt(2)): reward 1.0 and ``terminated``. It is
truncated after ``max_episode_steps`` actions (PLDM's budget of 200).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from nextworld.errors import UserInputError

TWOROOMS_ID = "nextworld/TwoRooms-v0"
"""The Gymnasium id the env is registered under (by importing ``nextworld.data.tasks``)."""

SIZE = 64
"""Side of the square arena and of the observations, in pixels."""
BORDER = (4, 60)
"""Rows and columns of the 1-pixel border lines."""
FREE_LO, FREE_HI = 5.0, 59.0
"""The agent's x and y always lie in ``[FREE_LO, FREE_HI]``."""
WALL_HALF_WIDTH = 1
"""The wall covers columns ``wall_x - 1 .. wall_x + 1``."""
DOOR_HALF_HEIGHT = 4
"""The door opens rows ``door_y - 4 .. door_y + 4`` (9 pixels)."""
CLEARANCE = 0.5
"""How close the agent's centre comes to a wall pixel's edge."""
FIXED_WALL_X, FIXED_DOOR_Y = 32, 10
"""PLDM's fixed layout."""
RANDOM_WALL_X = (20, 44)
RANDOM_DOOR_Y = (10, 54)
"""Ranges (both ends included) of the layouts drawn with ``random_wall``."""
MAX_STEP_NORM = 2.45
"""Longest move in pixels; longer actions are scaled down to this length."""
BLOB_SIGMA = 1.3
"""Standard deviation in pixels of the agent's Gaussian blob."""
PLACE_MARGIN = 2 * BLOB_SIGMA
"""Starts and goals keep at least this far (px) from every wall pixel's edge."""
FPS = 10.0
"""Frame rate recorded for Two-Rooms data (the task has no clock of its own)."""

_BLOB_RADIUS = 6  # pixels beyond 6 px of the centre round to 0 (255 * exp(-5.5^2 / 3.38) < 0.04)
_NEG_INV_2VAR = -1.0 / (2.0 * BLOB_SIGMA**2)
_FAR = 1e9  # stands for the unbounded end of a wall piece (the border bounds the agent anyway)


@dataclass
class TwoRoomsConfig:
    """The Two-Rooms task: layout, success and episode length."""

    random_wall: bool = False
    """Draw the wall column from [20, 44] and the door centre from [10, 54] every episode (the
    EB-JEPA variant); otherwise PLDM's fixed wall at column 32 with its door centred at row 10."""
    success_radius: float = math.sqrt(2)
    """The episode succeeds when the agent is closer than this (px) to the goal; sqrt(2) is
    PLDM's criterion, a mean squared x/y error below 1."""
    max_episode_steps: int = 200
    """Actions after which the env truncates the episode (PLDM's planning budget)."""


@dataclass(frozen=True)
class Layout:
    """Where the wall and its door are: the wall's centre column and the door's centre row."""

    wall_x: int
    door_y: int

    @functools.cached_property
    def pieces(self) -> tuple[tuple[float, float, float, float], ...]:
        """The wall above and below the door, as open rectangles the agent's centre may not
        enter: (x_lo, x_hi, y_lo, y_hi)."""
        x_lo = self.wall_x - WALL_HALF_WIDTH - 0.5 - CLEARANCE
        x_hi = self.wall_x + WALL_HALF_WIDTH + 0.5 + CLEARANCE
        return ((x_lo, x_hi, -_FAR, self.door_y - DOOR_HALF_HEIGHT),
                (x_lo, x_hi, self.door_y + DOOR_HALF_HEIGHT, _FAR))

    def is_free(self, x: float, y: float) -> bool:
        """Whether the agent may be at (x, y)."""
        if not (FREE_LO <= x <= FREE_HI and FREE_LO <= y <= FREE_HI):
            return False
        return not any(x0 < x < x1 and y0 < y < y1 for x0, x1, y0, y1 in self.pieces)

    def room(self, x: float) -> int | None:
        """0 for the left room, 1 for the right one, None in the doorway (inside the wall's columns)."""
        if x <= self.wall_x - WALL_HALF_WIDTH - 0.5 - CLEARANCE:
            return 0
        if x >= self.wall_x + WALL_HALF_WIDTH + 0.5 + CLEARANCE:
            return 1
        return None

    def room_box(self, room: int) -> tuple[float, float, float, float]:
        """(x_lo, x_hi, y_lo, y_hi) of the points of ``room`` at least PLACE_MARGIN from every wall."""
        lo, hi = BORDER[0] + 0.5 + PLACE_MARGIN, BORDER[1] - 0.5 - PLACE_MARGIN
        if room == 0:
            return lo, self.wall_x - WALL_HALF_WIDTH - 0.5 - PLACE_MARGIN, lo, hi
        return self.wall_x + WALL_HALF_WIDTH + 0.5 + PLACE_MARGIN, hi, lo, hi

    def move(self, x: float, y: float, dx: float, dy: float) -> tuple[float, float]:
        """Where the agent at the free point (x, y) ends after the displacement (dx, dy).

        The segment from (x, y) to (x + dx, y + dy) is cut at its first contact with the
        border or a wall piece (slab test against each rectangle), and the coordinate that
        made contact is set exactly on the boundary, so the agent never ends inside a wall.
        """
        t, snap_axis, snap_value = 1.0, -1, 0.0
        for axis, (p, d) in enumerate(((x, dx), (y, dy))):  # leaving the border box
            if d > 0 and (FREE_HI - p) < d * t:
                t, snap_axis, snap_value = (FREE_HI - p) / d, axis, FREE_HI
            elif d < 0 and (FREE_LO - p) > d * t:
                t, snap_axis, snap_value = (FREE_LO - p) / d, axis, FREE_LO
        for x0, x1, y0, y1 in self.pieces:  # entering a wall piece
            t_in, t_out, axis_in, value_in = -math.inf, math.inf, -1, 0.0
            for axis, (p, d, lo, hi) in enumerate(((x, dx, x0, x1), (y, dy, y0, y1))):
                if d == 0.0:
                    if not lo < p < hi:
                        t_in = math.inf  # never inside this slab
                    continue
                near, far = ((lo, hi) if d > 0 else (hi, lo))
                t_near, t_far = (near - p) / d, (far - p) / d
                if t_near > t_in:
                    t_in, axis_in, value_in = t_near, axis, near
                t_out = min(t_out, t_far)
            if t_in < t_out and t_in < t and t_out > 0.0:
                t, snap_axis, snap_value = max(t_in, 0.0), axis_in, value_in
        nx, ny = x + t * dx, y + t * dy
        if snap_axis == 0:
            nx = snap_value
        elif snap_axis == 1:
            ny = snap_value
        return min(max(nx, FREE_LO), FREE_HI), min(max(ny, FREE_LO), FREE_HI)


@functools.lru_cache(maxsize=64)
def walls_image(layout: Layout) -> np.ndarray:
    """The walls of ``layout`` alone, uint8 [64, 64, 3] (read-only): channels 1 and 2 are 255 on walls."""
    wall = np.zeros((SIZE, SIZE), bool)
    lo, hi = BORDER
    wall[[lo, hi], lo:hi + 1] = True
    wall[lo:hi + 1, [lo, hi]] = True
    wall[lo:hi + 1, layout.wall_x - WALL_HALF_WIDTH:layout.wall_x + WALL_HALF_WIDTH + 1] = True
    wall[layout.door_y - DOOR_HALF_HEIGHT:layout.door_y + DOOR_HALF_HEIGHT + 1,
         layout.wall_x - WALL_HALF_WIDTH:layout.wall_x + WALL_HALF_WIDTH + 1] = False
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    image[wall, 1:] = 255
    image.flags.writeable = False
    return image


def _blob(xs: np.ndarray, ys: np.ndarray, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The agent's blob at positions (xs, ys) [T], sampled at ``rows`` x ``cols``: uint8 [T, R, C]."""
    gx = np.exp((cols[None, :] - xs[:, None]) ** 2 * _NEG_INV_2VAR)  # [T, C]
    gy = np.exp((rows[None, :] - ys[:, None]) ** 2 * _NEG_INV_2VAR)  # [T, R]
    return (255.0 * gy[:, :, None] * gx[:, None, :] + 0.5).astype(np.uint8)  # [T, R, C]


_PIXELS = np.arange(SIZE, dtype=np.float64)


def render_frames(positions: np.ndarray, layout: Layout) -> np.ndarray:
    """Observations of the agent at each of ``positions`` float [T, 2] (x, y): uint8 [T, 64, 64, 3]."""
    positions = np.asarray(positions, np.float64)
    frames = np.empty((len(positions), SIZE, SIZE, 3), np.uint8)
    frames[..., 1:] = walls_image(layout)[..., 1:]
    frames[..., 0] = _blob(positions[:, 0], positions[:, 1], _PIXELS, _PIXELS)
    return frames


_OFFSETS = np.arange(-_BLOB_RADIUS, _BLOB_RADIUS + 1, dtype=np.float64)  # [K], K = 13


def render_frame(x: float, y: float, layout: Layout) -> np.ndarray:
    """One observation, uint8 [64, 64, 3], the blob drawn only within 6 px of the agent. Its
    pixels equal ``render_frames``': ``offset - (x - cx)`` is the same one rounding of ``col - x``."""
    frame = walls_image(layout).copy()
    cx, cy = round(x), round(y)
    g = np.exp((_OFFSETS - np.array([[x - cx], [y - cy]])) ** 2 * _NEG_INV_2VAR)  # [2, K]: x and y profiles
    patch = (255.0 * g[1][:, None] * g[0][None, :] + 0.5).astype(np.uint8)  # [K rows, K cols]
    r0, c0 = cy - _BLOB_RADIUS, cx - _BLOB_RADIUS  # may lie off the image by a pixel
    frame[max(r0, 0):r0 + len(_OFFSETS), max(c0, 0):c0 + len(_OFFSETS), 0] = \
        patch[max(-r0, 0):SIZE - r0, max(-c0, 0):SIZE - c0]
    return frame


def clip_step(dx: float, dy: float) -> tuple[float, float]:
    """(dx, dy) scaled down to length MAX_STEP_NORM when longer."""
    norm = math.hypot(dx, dy)
    if norm > MAX_STEP_NORM:
        scale = MAX_STEP_NORM / norm
        return dx * scale, dy * scale
    return dx, dy


def sample_layout(rng: np.random.Generator, random_wall: bool) -> Layout:
    """PLDM's fixed layout, or one drawn uniformly from the random-wall ranges."""
    if not random_wall:
        return Layout(FIXED_WALL_X, FIXED_DOOR_Y)
    return Layout(int(rng.integers(RANDOM_WALL_X[0], RANDOM_WALL_X[1] + 1)),
                  int(rng.integers(RANDOM_DOOR_Y[0], RANDOM_DOOR_Y[1] + 1)))


def sample_in_room(rng: np.random.Generator, layout: Layout, room: int) -> tuple[float, float]:
    """A point uniform in ``room`` (0 left, 1 right), PLACE_MARGIN away from every wall."""
    x0, x1, y0, y1 = layout.room_box(room)
    return float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1))


def sample_free(rng: np.random.Generator, layout: Layout) -> tuple[float, float]:
    """A point uniform in the whole free space (both rooms and the doorway)."""
    while True:
        x, y = (float(v) for v in rng.uniform(FREE_LO, FREE_HI, 2))
        if layout.is_free(x, y):
            return x, y


class TwoRoomsEnv(gym.Env[np.ndarray, np.ndarray]):
    """Two-Rooms point navigation as a Gymnasium env (see the module docstring).

    ``reset(seed=..., options={"start": (x, y), "goal": (x, y)})``: either option may be left
    out, and is then drawn in the room opposite the other. ``info`` holds ``position`` and
    ``goal`` (float32 [2]), ``distance``, ``success`` and ``wall`` (float32 [2]: wall_x, door_y).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": FPS}

    def __init__(self, config: TwoRoomsConfig | None = None, render_mode: str | None = None,
                 **fields: Any) -> None:
        """
        Args:
            config: the task; fields given as keywords replace its values
                (``TwoRoomsEnv(random_wall=True)``).
            render_mode: None or ``"rgb_array"``.
        """
        if render_mode not in (None, "rgb_array"):
            raise UserInputError(f"render_mode {render_mode!r}: Two-Rooms renders rgb_array only")
        try:
            self.config = dataclasses.replace(config or TwoRoomsConfig(), **fields)
        except TypeError:
            known = ", ".join(f.name for f in dataclasses.fields(TwoRoomsConfig))
            raise UserInputError(f"TwoRoomsEnv: unknown option among {sorted(fields)}; known: {known}") from None
        if not self.config.success_radius > 0:
            raise UserInputError(f"success_radius {self.config.success_radius}: must be positive")
        if self.config.max_episode_steps < 1:
            raise UserInputError(f"max_episode_steps {self.config.max_episode_steps}: must be at least 1")
        self.render_mode = render_mode
        self.action_space = gym.spaces.Box(-MAX_STEP_NORM, MAX_STEP_NORM, (2,), np.float32)
        self.observation_space = gym.spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8)
        self.layout = Layout(FIXED_WALL_X, FIXED_DOOR_Y)
        self.position: tuple[float, float] | None = None
        self.goal = (0.0, 0.0)
        self.steps = 0

    def _point(self, options: dict[str, Any], name: str) -> tuple[float, float] | None:
        """The option ``name`` as a free point, or None when absent."""
        if options.get(name) is None:
            return None
        value = np.asarray(options[name], dtype=np.float64)
        if value.shape != (2,) or not np.isfinite(value).all():
            raise UserInputError(f"reset option {name} {options[name]!r}: expected two finite numbers (x, y)")
        x, y = float(value[0]), float(value[1])
        if not self.layout.is_free(x, y):
            raise UserInputError(f"reset option {name} ({x}, {y}): not in free space (x and y in "
                                 f"[{FREE_LO:g}, {FREE_HI:g}], outside the wall at column {self.layout.wall_x})")
        return x, y

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        unknown = set(options) - {"start", "goal"}
        if unknown:
            raise UserInputError(f"reset options {sorted(unknown)}: unknown; Two-Rooms takes start and goal")
        rng = self.np_random
        self.layout = sample_layout(rng, self.config.random_wall)
        start, goal = self._point(options, "start"), self._point(options, "goal")
        if start is None and goal is None:
            room = int(rng.random() < 0.5)
            start, goal = sample_in_room(rng, self.layout, room), sample_in_room(rng, self.layout, 1 - room)
        elif goal is None:
            room = self.layout.room(start[0])
            goal = sample_in_room(rng, self.layout, int(rng.random() < 0.5) if room is None else 1 - room)
        elif start is None:
            room = self.layout.room(goal[0])
            start = sample_in_room(rng, self.layout, int(rng.random() < 0.5) if room is None else 1 - room)
        self.position, self.goal, self.steps = start, goal, 0
        return render_frame(*self.position, self.layout), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.position is None:
            raise RuntimeError("TwoRoomsEnv.step before reset")
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (2,):
            raise UserInputError(f"action {action!r}: expected a displacement (dx, dy) of shape (2,), "
                                 f"got shape {a.shape}")
        dx, dy = float(a[0]), float(a[1])
        if not (math.isfinite(dx) and math.isfinite(dy)):
            raise UserInputError(f"action {action!r}: must be finite")
        self.position = self.layout.move(*self.position, *clip_step(dx, dy))
        self.steps += 1
        info = self._info()
        terminated = info["success"]
        truncated = self.steps >= self.config.max_episode_steps
        return render_frame(*self.position, self.layout), float(terminated), terminated, truncated, info

    def _info(self) -> dict[str, Any]:
        distance = math.dist(self.position, self.goal)
        return {"position": np.array(self.position, np.float32), "goal": np.array(self.goal, np.float32),
                "distance": distance, "success": distance < self.config.success_radius,
                "wall": np.array((self.layout.wall_x, self.layout.door_y), np.float32)}

    def render(self) -> np.ndarray | None:
        """The current observation, uint8 [64, 64, 3], when ``render_mode`` is ``"rgb_array"``."""
        if self.render_mode is None or self.position is None:
            return None
        return render_frame(*self.position, self.layout)

    def render_goal(self) -> np.ndarray:
        """The observation with the agent at the goal, uint8 [64, 64, 3]: a planner's goal image."""
        if self.position is None:
            raise RuntimeError("TwoRoomsEnv.render_goal before reset")
        return render_frame(*self.goal, self.layout)


def make_tworooms(**kwargs: Any) -> TwoRoomsEnv:
    """A ``TwoRoomsEnv`` built directly, keywords as for its constructor (``TwoRoomsConfig`` fields,
    ``render_mode``). ``gym.make(TWOROOMS_ID, ...)`` gives the same env inside Gymnasium's checking
    wrappers; there pass the limit as ``max_episode_steps`` only if a ``TimeLimit`` on top of the
    env's own (200) is wanted, since Gymnasium keeps that keyword for itself."""
    return TwoRoomsEnv(**kwargs)
