import numpy as np
import pyarrow.parquet as pq
import pytest

from healthagent.cohort.store import TrajectoryError, read_window, write_trajectory
from modeling.ml.data.cohort import make_cohort
from modeling.ml.data.spec import FEATURE_NAMES


@pytest.fixture
def record():
    return make_cohort(participants=1, days=20, seed=4).participant(0).minutes


def test_round_trip_keeps_values_and_mask(tmp_path, record):
    path = tmp_path / "p.parquet"
    write_trajectory(path=path, values=record.values, mask=record.mask, start_weekday=2)
    values, mask = read_window(path=path, start_day=0, end_day=20)
    np.testing.assert_array_equal(mask, record.mask)
    np.testing.assert_array_equal(values, record.values)
    assert [p.name for p in tmp_path.iterdir()] == ["p.parquet"]  # no partial file left


def test_a_window_reads_only_its_days_and_columns(tmp_path, record):
    path = tmp_path / "p.parquet"
    write_trajectory(path=path, values=record.values, mask=record.mask, start_weekday=0)
    parquet = pq.ParquetFile(path)
    assert parquet.metadata.num_row_groups == 20  # one row group per day: windows prune
    values, mask = read_window(path=path, start_day=5, end_day=19, channels=["steps", "heart_rate"])
    assert values.shape == (14, 2, 1440)
    np.testing.assert_array_equal(values[:, 1], record.values[5:19, FEATURE_NAMES.index("heart_rate")])
    np.testing.assert_array_equal(mask[:, 0], record.mask[5:19, FEATURE_NAMES.index("steps")])


def test_unknown_channels_and_missing_files_are_clear_errors(tmp_path, record):
    with pytest.raises(TrajectoryError, match="unknown channels: pulse"):
        read_window(path=tmp_path / "x.parquet", start_day=0, end_day=1, channels=["pulse"])
    with pytest.raises(TrajectoryError, match="cannot be read"):
        read_window(path=tmp_path / "x.parquet", start_day=0, end_day=1)
