"""Sizes and the settings of the landscape and the surveys."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class SizeSettings:
    """What differs between the sizes; the physical landscape does not."""

    width_m: int
    height_m: int
    towns: int
    town_population: tuple
    min_town_spacing_m: float
    survey_households: int
    ground_truth_households: int
    household_noise_sd: float


SIZES = {
    "tiny": SizeSettings(
        width_m=24_000,
        height_m=16_000,
        towns=3,
        town_population=(12_000, 45_000),
        min_town_spacing_m=6_500,
        survey_households=4_500,
        ground_truth_households=500,
        household_noise_sd=1.9,
    ),
    "demo": SizeSettings(
        width_m=60_000,
        height_m=50_000,
        towns=8,
        town_population=(15_000, 160_000),
        min_town_spacing_m=11_000,
        survey_households=60_000,
        ground_truth_households=4_000,
        household_noise_sd=3.0,
    ),
}


@dataclasses.dataclass(frozen=True)
class LandscapeSettings:
    """The physical landscape, in metres (the same for every size)."""

    river_position: float = 0.36  # share of the width, from the west edge
    meander_amplitude_m: float = 1800.0
    meander_wavelength_m: float = 15000.0
    bend_amplitude_m: float = 500.0
    bend_wavelength_m: float = 5200.0
    river_belt_half_width_m: float = 1300.0  # flood plain between the embankments
    channel_half_width_m: float = 170.0
    main_canal_offset_m: float = 4600.0
    branch_canal_spacing_m: float = 3600.0
    distributary_spacing_m: float = 1400.0
    command_area_share: float = 0.80  # canals end here (share of the width); desert beyond
    irrigation_reach_m: float = 1500.0
    field_block_m: float = 320.0  # the "square" of the canal-colony field layout
    field_angle_deg: float = 7.0
    village_density_km2: float = 0.6  # in fully irrigated land
    hamlet_density_km2: float = 2.6
    village_population_median: float = 900.0
    hamlet_population_median: float = 110.0
    people_per_house: float = 6.5
    village_people_per_km2: float = 15_000.0
    town_people_per_km2: float = 16_000.0


@dataclasses.dataclass(frozen=True)
class SurveySettings:
    """The survey and the wealth model behind its scores."""

    survey_start: str = "2016-01-15"
    survey_end: str = "2017-11-30"
    early_share: float = 0.03  # households dated 2015 (dropped by MIN_DATE 2016-01-01)
    zero_score_share: float = 0.015  # data-entry errors: score 0
    diffuse_share: float = 0.03  # GPS fixes placed anywhere, mostly with poor accuracy
    congregation_share: float = 0.02  # recorded where enumerators gathered: a town centre
    poor_accuracy_share: float = 0.02  # ordinary fixes worse than 20 m
    town_sampling_weight: float = 0.25  # a rural survey: town households sampled less
    ground_truth_start: str = "2019-02-01"
    ground_truth_days: int = 120
    score_scale: float = 10.0  # score points per standard deviation of wealth
    target_poor_share: float = 0.45  # share of poor cells the score offset is calibrated to
    unobserved_sigma_m: float = 2500.0  # smooth wealth component no raster shows
    weight_greenery: float = 0.35
    weight_settlement_size: float = 0.35
    weight_night_lights: float = 0.30
    weight_travel_time: float = -0.30
    weight_unobserved: float = 0.55
