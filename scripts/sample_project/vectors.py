"""Vector outputs: survey, districts, urban centres."""

import numpy as np

from .common import CRS_GEOGRAPHIC, CRS_PROJECTED, ORIGIN_X, ORIGIN_Y


def to_utm(geometries):
    import shapely

    return shapely.transform(
        np.asarray(geometries, dtype=object), lambda c: c + np.array([ORIGIN_X, ORIGIN_Y])
    )


def write_vector(path, layer, geometries, fields, crs, geometry_type):
    """Write a GeoPackage layer with pyogrio (a date64[D] array becomes a Date field)."""
    import shapely
    from pyogrio.raw import write

    write(
        str(path),
        geometry=shapely.to_wkb(geometries),
        field_data=list(fields.values()),
        fields=list(fields),
        layer=layer,
        driver="GPKG",
        geometry_type=geometry_type,
        crs=crs,
    )


def survey_lonlat(survey):
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(CRS_PROJECTED, CRS_GEOGRAPHIC, always_xy=True).transform(
        survey.x + ORIGIN_X, survey.y + ORIGIN_Y
    )
    return np.round(lon, 7), np.round(lat, 7)


def write_survey(path, layer, survey):
    import shapely

    lon, lat = survey_lonlat(survey)
    write_vector(
        path,
        layer,
        shapely.points(lon, lat),
        {
            "hh_id": survey.hh_id,
            "score": survey.score.astype(np.int32),
            "gps_accuracy_m": survey.accuracy.astype(np.float64),
            "survey_date": survey.date.astype("datetime64[D]"),
        },
        CRS_GEOGRAPHIC,
        "Point",
    )


def write_districts(path, landscape):
    districts = landscape.districts
    write_vector(
        path,
        "synthetic_districts",
        to_utm(districts.polygons),
        {
            "name": np.array(districts.names, dtype=object),
            "surveyed": districts.surveyed.astype(np.int32),
        },
        CRS_PROJECTED,
        "Polygon",
    )


def urban_centre_polygons(landscape):
    return [polygon.buffer(150.0).simplify(5.0) for polygon in landscape.settlements.town_polygons]


def write_urban_centres(path, landscape):
    settlements = landscape.settlements
    write_vector(
        path,
        "synthetic_urban_centres",
        to_utm(urban_centre_polygons(landscape)),
        {
            "name": np.array(settlements.names, dtype=object),
            "population": settlements.population[: settlements.n_towns].astype(np.int64),
        },
        CRS_PROJECTED,
        "Polygon",
    )
