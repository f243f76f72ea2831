"""Cell alignment, ids and the working CRS (no QGIS)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from povmap_qgis.core.errors import PovmapInputError
from povmap_qgis.core.grid import cells


@given(
    st.lists(
        st.tuples(st.integers(-(10**8), 10**8), st.integers(-(10**8), 10**8)),
        min_size=1,
        max_size=50,
    )
)
def test_cell_ids_round_trip_and_are_unique(pairs):
    rows, cols = np.array(pairs).T
    ids = cells.encode_cell_ids(rows, cols)
    assert ids.dtype == np.int64
    back_rows, back_cols = cells.decode_cell_ids(ids)
    assert (back_rows == rows).all() and (back_cols == cols).all()
    assert len(set(ids.tolist())) == len(set(pairs))


@given(
    st.floats(-2e7, 2e7, allow_subnormal=False),
    st.floats(-2e7, 2e7, allow_subnormal=False),
    st.sampled_from([1.0, 100.0, 250.0, 1000.0, 5000.0]),
)
def test_a_point_lies_in_the_aligned_square_of_its_cell(x, y, size):
    rows, cols = cells.cell_rows_cols([x], [y], size)
    box = cells.cell_boxes(rows, cols, size)[0]
    xmin, ymin, xmax, ymax = box.bounds
    assert xmin <= x < xmax + 1e-6 and ymin <= y < ymax + 1e-6
    assert xmin % size == 0 and ymin % size == 0


def test_cell_id_reads_as_row_and_column():
    assert cells.encode_cell_ids([2812], [604]) == [500002812_500000604]
    assert cells.encode_cell_ids([-1], [-1]) == [499999999_499999999]


@pytest.mark.parametrize(
    "lon, lat, code",
    [(68.3, 25.2, "32642"), (-47.9, -15.8, "32723"), (2.35, 48.85, "32631"), (179.9, 0.5, "32660")],
)
def test_default_crs_is_the_utm_zone_of_the_data(lon, lat, code):
    crs, note = cells.working_crs(None, (lon - 0.1, lat - 0.1, lon + 0.1, lat + 0.1))
    assert crs.to_authority() == ("EPSG", code)
    assert f"EPSG:{code}" in note


def test_requested_crs_must_be_projected_in_metres():
    crs, _ = cells.working_crs("EPSG:3857", (0, 0, 1, 1))
    assert crs.to_epsg() == 3857
    with pytest.raises(PovmapInputError, match="CRS: .*not a projected CRS"):
        cells.working_crs("EPSG:4326", (0, 0, 1, 1))
    with pytest.raises(PovmapInputError, match="CRS: 'nonsense' is not a coordinate"):
        cells.working_crs("nonsense", (0, 0, 1, 1))
