import numpy as np
import pytest

from sr_export.families.invsr.schedule import (
    DEFAULT_TIMESTEPS,
    build_schedule,
    parse_timesteps,
    resolve_timesteps,
    sigma_table,
)
from sr_runtime.errors import SRError

SD_TURBO_SCHEDULER = {
    "_class_name": "EulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "prediction_type": "epsilon",
    "timestep_spacing": "trailing",
    "steps_offset": 1,
    "interpolation_type": "linear",
    "use_karras_sigmas": False,
    "timestep_type": "discrete",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "trained_betas": None,
}

# invsr-inference.md section 2.5: T, sigma(T-1) in fp32, c_in = 1/sqrt(sigma^2+1)
SPEC_TABLE = [(250, 0.693205, 0.821847), (200, 0.569285, 0.869044), (150, 0.453819, 0.910616),
              (100, 0.341674, 0.946289), (50, 0.223004, 0.976025)]


def test_sigma_table_matches_spec_values():
    table = sigma_table(SD_TURBO_SCHEDULER)
    assert table.shape == (1000,) and table.dtype == np.float32
    for cli_t, sigma, c_in in SPEC_TABLE:
        assert table[cli_t - 1] == pytest.approx(sigma, abs=2e-6)
        assert 1 / np.sqrt(table[cli_t - 1] ** 2 + 1) == pytest.approx(c_in, abs=2e-6)
    assert table[0] == pytest.approx(0.029168, abs=2e-6)
    assert table[999] == pytest.approx(14.6147, abs=1e-3)


def test_sigma_table_is_independent_closed_form():
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    alphas_cumprod = np.cumprod(1 - betas)
    closed = np.sqrt((1 - alphas_cumprod) / alphas_cumprod)
    np.testing.assert_allclose(sigma_table(SD_TURBO_SCHEDULER), closed, rtol=2e-5)


def test_defaults_are_the_official_sets():
    assert resolve_timesteps(1) == (200,)
    assert resolve_timesteps(3) == (200, 100, 50)
    assert resolve_timesteps(5) == (250, 200, 150, 100, 50)
    assert set(DEFAULT_TIMESTEPS) == {1, 2, 3, 4, 5}


def test_user_timesteps_sorted_descending():
    assert resolve_timesteps(3, [50, 250, 120]) == (250, 120, 50)


@pytest.mark.parametrize(
    ("steps", "timesteps", "fragment"),
    [(2, [200], "has 1 values"), (6, None, "1-5 steps"), (2, [0, 100], "1..1000"), (2, [100, 100], "distinct"),
     (0, None, "at least 1")],
)
def test_bad_timesteps_are_one_line_errors(steps, timesteps, fragment):
    with pytest.raises(SRError, match=fragment) as err:
        resolve_timesteps(steps, timesteps)
    assert "\n" not in str(err.value)


def test_schedule_constants_for_three_steps():
    schedule = build_schedule(SD_TURBO_SCHEDULER, (200, 100, 50))
    assert schedule.timesteps == (199.0, 99.0, 49.0)
    assert schedule.sigmas[-1] == 0.0 and len(schedule.sigmas) == 4
    assert schedule.sigmas[0] == pytest.approx(0.569285, abs=2e-6)
    assert schedule.sigmas[2] == pytest.approx(0.223004, abs=2e-6)


def test_sigma_min_final_sigma():
    schedule = build_schedule({**SD_TURBO_SCHEDULER, "final_sigmas_type": "sigma_min"}, (200,))
    assert schedule.sigmas[-1] == pytest.approx(0.029168, abs=2e-6)


def test_non_epsilon_scheduler_refused():
    with pytest.raises(SRError, match="epsilon"):
        sigma_table({**SD_TURBO_SCHEDULER, "prediction_type": "v_prediction"})


@pytest.mark.parametrize("values", [("",), (" , ",)])
def test_timesteps_that_name_none_are_refused_not_taken_as_the_default(values):
    with pytest.raises(SRError, match="names no timesteps"):
        parse_timesteps(values)
