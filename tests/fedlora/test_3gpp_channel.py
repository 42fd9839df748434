"""The replayed 3GPP TR 38.901 UMi channel (``channel="3gpp-umi"``): the env replays the shipped
trace file exactly (by the documented draw of trace, offset and devices), single and vector env
agree, checkpoints resume exactly, misfits give clear errors, the file is what its sidecar says;
and, only where sionna is installed, the generator against the TR 38.901 path-loss formulas.

Everything but the last tests is offline and never imports sionna."""

from __future__ import annotations

import hashlib
import importlib.util
import json

import gymnasium as gym
import numpy as np
import pytest
from edgeft.baselines.fedlora.hindsight import episode_channels, episode_hindsight
from edgeft.envs import channel_traces as C
from edgeft.envs.fedlora import trace_channel as T
from edgeft.envs.fedlora.config import FedLoRAConfig
from edgeft.envs.fedlora.generator import (
    CopyBlocks,
    CopyChannels,
    copy_channels,
)
from edgeft.envs.fedlora.observation import decode_observation
from gymnasium.utils import seeding

import edgeft  # noqa: F401  (registers the ids)
from tests.fedlora.checkpointing import play

ENV_ID = "edgeft/FedLoRAScheduling-v0"
UMI = {"channel": "3gpp-umi"}
HAS_SIONNA = importlib.util.find_spec("sionna") is not None


def _trace() -> C.Trace:
    return C.load_trace("3gpp-umi")


def _expected_episode(seed: int, k: int, rounds: int) -> tuple[int, int, np.ndarray]:
    """(trace, offset, devices) of an episode by the documented rule, from a fresh generator
    seeded as the env's: one rng.random(2 + devices) call."""
    tr = _trace()
    rng, _ = seeding.np_random(seed)
    u = rng.random(2 + tr.num_devices)
    starts = max(1, tr.rounds - rounds)
    return (int(u[0] * tr.num_traces), int(u[1] * starts), np.argsort(u[2:], kind="stable")[:k])


# ------------------------------------------------------------------ the file
def test_trace_file_is_small_finite_float32_and_matches_its_sidecar():
    path = C.trace_path("3gpp-umi")
    assert path.stat().st_size < 2_000_000
    with np.load(path) as data:
        raw = data["gain_db"]
    assert raw.dtype == np.float32 and raw.shape == (64, 128, 20)
    assert np.isfinite(raw).all()
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["shape"] == {"traces": 64, "rounds": 128, "devices": 20}
    assert meta["gain_db_sha256"] == hashlib.sha256(raw.tobytes()).hexdigest()
    assert meta["versions"]["sionna"] and meta["settings"]["scenario"] == "umi"
    np.testing.assert_array_equal(_trace().gain_db, raw.astype(np.float64))
    assert not _trace().gain_db.flags.writeable


def test_trace_units_put_its_median_at_the_default_channel_median():
    """The file's reference ("ft-median"): all gains shifted by one constant so that their
    median is the FedLoRA default channel's (FT V.A path loss and Rayleigh fading, drawn here
    independently of the generator's helper), i.e. received W per W over the env's noise_psd."""
    meta = _trace().meta
    assert meta["units"]["reference"] == "ft-median"
    rng = np.random.default_rng(123)
    n = 400_000
    r = 50.0 * np.sqrt(rng.random(n))
    th = 2 * np.pi * rng.random(n)
    d = np.hypot(300.0 + r * np.cos(th), r * np.sin(th))
    ft = 10 * np.log10((d / 10.0) ** -3.5 * rng.standard_exponential(n))
    assert abs(np.median(_trace().gain_db) - np.median(ft)) < 0.1
    assert abs(meta["units"]["ft_default_median_gain_db"] - np.median(ft)) < 0.1
    # the 3GPP statistics differ from the Rayleigh channel's: a wide LoS/NLoS + shadowing spread
    spread = np.percentile(_trace().gain_db, [10, 90])
    assert spread[1] - spread[0] > 20.0


# ------------------------------------------------------------------ replay
@pytest.mark.parametrize("k,rounds", [(20, 100), (7, 128), (20, 30)])
def test_env_replays_the_trace_rows_of_the_drawn_episode(k, rounds):
    tr = _trace()
    for seed in (0, 17):
        env = gym.make(ENV_ID, num_devices=k, episode_rounds=rounds, **UMI)
        obs, _ = env.reset(seed=seed)
        trace, offset, devices = _expected_episode(seed, k, rounds)
        assert len(set(devices.tolist())) == k
        ch = env.unwrapped._fading
        assert (ch.trace, ch.offset) == (trace, offset)
        np.testing.assert_array_equal(ch.devices, devices)
        for t in range(rounds + 1):  # T rounds and the observation after the last step
            row = tr.gain_db[trace, (offset + t) % tr.rounds, devices]
            dec = decode_observation(obs, env.unwrapped.config)
            np.testing.assert_array_equal(dec.gain_db, row)
            np.testing.assert_array_equal(obs[:k], row)
            if t == rounds:
                break
            obs, _, _, trunc, info = env.step(np.full(k, 1.0 / k))
            np.testing.assert_allclose(info["channel_gain"], 10 ** (row / 10), rtol=1e-15)
        assert trunc
        if rounds < tr.rounds:  # the T + 1 rows are contiguous in the trace
            assert offset + rounds <= tr.rounds - 1


def test_episodes_differ_by_seed_and_repeat_by_seed():
    env = gym.make(ENV_ID, **UMI)
    firsts = [env.reset(seed=s)[0][:20].copy() for s in range(8)]
    assert len({f.tobytes() for f in firsts}) == 8
    np.testing.assert_array_equal(env.reset(seed=3)[0], gym.make(ENV_ID, **UMI).reset(seed=3)[0])


def test_tx_power_scales_the_replayed_gains():
    a = gym.make(ENV_ID, **UMI).reset(seed=4)[0][:20]
    b = gym.make(ENV_ID, tx_power_w=2.0, **UMI).reset(seed=4)[0][:20]
    np.testing.assert_allclose(b - a, 10 * np.log10(2.0), rtol=0, atol=1e-12)


def test_channel_draws_nothing_after_the_reset():
    """The env's RNG is where the reset left it after any number of rounds (the Rayleigh
    blocks draw every 64 rounds; the replay never)."""
    env = gym.make(ENV_ID, episode_rounds=100, **UMI)
    env.reset(seed=2)
    state = env.unwrapped.np_random.bit_generator.state
    for _ in range(100):
        env.step(np.zeros(20))
    assert env.unwrapped.np_random.bit_generator.state == state


# ------------------------------------------------------------------ single vs vector
def test_vector_env_copy_equals_the_single_env_across_episode_ends():
    kw = {"episode_rounds": 12, "num_devices": 20, **UMI}
    for seed in (0, 4):
        single = gym.make(ENV_ID, **kw).unwrapped  # no TimeLimit: reset by hand like autoreset
        vec = gym.make_vec(ENV_ID, num_envs=1, vectorization_mode="vector_entry_point", **kw)
        os_, _ = single.reset(seed=seed)
        ov, _ = vec.reset(seed=seed)
        rng = np.random.default_rng(seed)
        done = False
        for _ in range(40):
            a = rng.random(20) / 10
            if done:  # NEXT_STEP autoreset: this step restarts the copy
                os_, _ = single.reset()
                ov, rv, _, _, _ = vec.step(a[None])
                assert rv[0] == 0.0
                np.testing.assert_array_equal(ov[0], os_)
                done = False
                continue
            np.testing.assert_array_equal(ov[0], os_)
            os_, rs, _, done, info_s = single.step(a)
            ov, rv, _, tv, info_v = vec.step(a[None])
            assert rs == rv[0] and done == tv[0]
            np.testing.assert_array_equal(info_s["channel_gain"], info_v["channel_gain"][0])


def test_vector_copies_replay_their_own_traces_and_restart_alone():
    tr = _trace()
    vec = gym.make_vec(
        ENV_ID,
        num_envs=4,
        vectorization_mode="vector_entry_point",
        episode_rounds=5,
        num_devices=9,
        **UMI,
    )
    obs, _ = vec.reset(seed=11)
    copies = vec.unwrapped._fading
    assert isinstance(copies, CopyChannels)
    seen = []
    for _ in range(13):
        for i, ch in enumerate(copies.channels):
            assert isinstance(ch, T.TraceChannel) and ch.db.shape == (128, 9)
            row = tr.gain_db[ch.trace, (ch.offset + ch.pos - 1) % 128, ch.devices]
            np.testing.assert_array_equal(obs[i, :9], row)
        seen.append([ch.trace for ch in copies.channels])
        obs, *_ = vec.step(np.zeros((4, 9)))
    assert max(ch.pos for ch in copies.channels) <= 6
    assert any(a != b for a, b in zip(seen, seen[1:]))  # restarted copies moved on


def test_copy_channels_of_a_trace_config():
    assert isinstance(copy_channels(FedLoRAConfig(**UMI), 2), CopyChannels)
    assert isinstance(copy_channels(FedLoRAConfig(), 2), CopyBlocks)
    assert FedLoRAConfig().channel == "rayleigh"


# ------------------------------------------------------------------ checkpoints
def test_checkpoint_resumes_a_replayed_episode_exactly(tmp_path):
    kw = {"num_devices": 8, "surrogate": {"noise": 0.01}, **UMI}

    def run(split):  # the saved position must not follow the live one: 4 live steps; the
        # fresh env is reset to another episode (trace) before loading
        return play(
            kw, tmp_path / "ck.pkl", split_at=11 if split else None, steps=30, seed=21, live_steps=4
        )

    (whole, ch_whole), (resumed, ch_resumed) = run(False), run(True)
    np.testing.assert_array_equal(whole, resumed)
    assert isinstance(ch_resumed, T.TraceChannel)
    assert (ch_resumed.trace, ch_resumed.offset, ch_resumed.pos) == (
        ch_whole.trace,
        ch_whole.offset,
        ch_whole.pos,
    ) and ch_whole.pos == 31
    np.testing.assert_array_equal(ch_resumed.devices, ch_whole.devices)


def test_checkpoint_of_another_channel_is_refused():
    a = gym.make(ENV_ID, **UMI).unwrapped
    a.reset(seed=0)
    b = gym.make(ENV_ID).unwrapped
    with pytest.raises(ValueError, match="different config"):
        b.load_state_dict(a.state_dict())


# ------------------------------------------------------------------ errors
def test_unknown_channel_lists_the_choices():
    with pytest.raises(ValueError, match=r"channel must be one of \['rayleigh', '3gpp-umi'\]"):
        gym.make(ENV_ID, channel="3gpp-uma")


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("num_devices", 21, r"num_devices=21 is more than the 20 devices"),
        ("episode_rounds", 129, r"episode_rounds=129 is more than the 128 rounds"),
        ("fading_correlation", 0.5, r"fading_correlation and mobility_speed_mps configure"),
        ("mobility_speed_mps", 1.0, r"fading_correlation and mobility_speed_mps configure"),
    ],
)
def test_misfits_give_clear_errors(field, value, match):
    with pytest.raises(ValueError, match=match):
        FedLoRAConfig(**{field: value}, **UMI)
    with pytest.raises(ValueError, match=match):
        gym.make_vec(
            ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", **{field: value}, **UMI
        )


def test_missing_trace_file_says_how_to_generate_it(tmp_path, monkeypatch):
    monkeypatch.setattr(C, "TRACE_DIR", tmp_path)
    C.load_trace.cache_clear()
    try:
        with pytest.raises(
            FileNotFoundError,
            match=r"make_3gpp_trace.*edgeft\[3gpp\]|"
            r"edgeft\[3gpp\].*make_3gpp_trace",
        ):
            FedLoRAConfig(**UMI)
        FedLoRAConfig()  # the default channel needs no file
    finally:
        C.load_trace.cache_clear()


# ------------------------------------------------------------------ hindsight
def test_hindsight_replays_the_trace():
    env = gym.make(ENV_ID, episode_rounds=40, **UMI)
    gain, _ = episode_channels(env, 5)
    trace, offset, devices = _expected_episode(5, 20, 40)
    tr = _trace()
    rows = tr.gain_db[trace, offset + np.arange(40)][:, devices]
    np.testing.assert_allclose(gain, 10 ** (rows / 10), rtol=1e-15)
    result = episode_hindsight(env, 5)
    assert result.value <= result.bound + 1e-9 and result.cost <= 40 * (1 + 1e-9)


# ------------------------------------------------------------------ the generator (sionna)
def _umi_basic_pathloss(d2d, d3d, los, fc_hz, h_bs, h_ut):
    """TR 38.901 Table 7.4.1-1, UMi - Street Canyon, written out independently of sionna."""
    fc = fc_hz / 1e9
    d_bp = 4 * (h_bs - 1.0) * (h_ut - 1.0) * fc_hz / 299_792_458.0
    pl1 = 32.4 + 21 * np.log10(d3d) + 20 * np.log10(fc)
    pl2 = (
        32.4 + 40 * np.log10(d3d) + 20 * np.log10(fc) - 9.5 * np.log10(d_bp**2 + (h_bs - h_ut) ** 2)
    )
    pl_los = np.where(d2d < d_bp, pl1, pl2)
    pl_nlos = np.maximum(
        pl_los, 35.3 * np.log10(d3d) + 22.4 + 21.3 * np.log10(fc) - 0.3 * (h_ut - 1.5)
    )
    return np.where(los, pl_los, pl_nlos)


@pytest.mark.skipif(not HAS_SIONNA, reason="sionna not installed (pip install 'edgeft[3gpp]')")
def test_generator_gives_tr38901_umi_path_loss_and_plausible_gains():
    from edgeft.envs.fedlora.make_3gpp_trace import TraceSettings, simulate_trace

    s = TraceSettings(
        traces=1,
        rounds=4,
        devices=12,
        cell_center_m=105.0,
        cell_radius_m=95.0,
        speed_mps=1.5,
        round_duration_s=2.0,
    )
    out = simulate_trace(s, 0)
    for key in ("gain_db", "pathloss_db", "shadowing_db", "los", "distance_2d_m"):
        assert out[key].shape == (4, 12), key
    d2d = out["distance_2d_m"]
    assert (d2d >= 10.0).all() and (d2d <= 200.0).all()
    pl = out["pathloss_db"]
    assert (pl > 60.0).all() and (pl < 160.0).all()
    d3d = np.hypot(d2d, s.bs_height_m - s.ut_height_m)
    expected = _umi_basic_pathloss(
        d2d, d3d, out["los"], s.carrier_frequency_hz, s.bs_height_m, s.ut_height_m
    )
    np.testing.assert_allclose(pl, expected, atol=0.02)  # float32 inside sionna
    # |h|^2 = -PL + shadowing + what the clusters and antennas add (a few dB around the 8 dBi
    # of the BS element, never tens of dB)
    small = out["gain_db"] + pl - out["shadowing_db"]
    assert (np.abs(small) < 30.0).all() and 0.0 < np.median(small) < 12.0
    assert (np.abs(out["shadowing_db"]) < 40.0).all()
    # reproducible from the seed alone
    np.testing.assert_array_equal(simulate_trace(s, 0)["gain_db"], out["gain_db"])


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SIONNA, reason="sionna not installed (pip install 'edgeft[3gpp]')")
def test_generator_regenerates_the_shipped_first_trace():
    """Trace 0 of the shipped file, regenerated from its sidecar's settings (~15 s): equal up to
    float32 rounding where sionna and torch are the versions that made it."""
    from edgeft.envs.fedlora.make_3gpp_trace import TraceSettings, simulate_trace

    meta = _trace().meta
    s = TraceSettings(**meta["settings"])
    raw = simulate_trace(s, 0)["gain_db"] + meta["units"]["offset_db"]
    np.testing.assert_allclose(raw, _trace().gain_db[0], atol=1e-3)
