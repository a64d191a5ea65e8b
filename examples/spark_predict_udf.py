"""The Spark equivalent of the Ray engine: ``pyspark.ml.functions.predict_batch_udf`` around the same runtime.

    spark-submit examples/spark_predict_udf.py BUNDLE INPUT.parquet OUTPUT_DIR [--threads 1] [--scores adue,sr]

``make_predict_fn(bundle)`` returns the function Spark calls once per Python worker: it loads the
bundle (at the same path on every executor) and returns ``predict(texts) -> dict of numpy arrays``
in the shape ``predict_batch_udf`` requires for a struct result (``probs`` and ``prediction_set``
2-D, the rest 1-D, one row per text). The columns are those of ``uehead predict`` for the same
bundle and options (:func:`uehead.runtime.batch_schema.columns_for_model`: a column per score, the
decisions of a calibrated bundle). Rows without a usable text get NaN scores there, because a 2-D
float array cannot hold a null row, and a prediction set is padded with nulls to the number of
classes; :func:`score` turns both back (nulls, the sets unpadded), so the columns and error rows
are those of ``uehead predict``.

What is tested here (tests/runtime/test_ray_data.py, no Spark needed): ``make_predict_fn`` against
``Model.predict`` and the shapes ``predict_batch_udf`` checks. What is not run in this project (no
JVM / pyspark in its environments): :func:`score` and :func:`main`, the Spark wiring.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np


def make_predict_fn(bundle: str, *, threads: int = 1, batch_size: int = 32, **column_options):
    """``make_predict_fn`` for ``predict_batch_udf``: loads the bundle once per Python worker.
    ``column_options``: ``scores``, ``distances``, ``risk``, ``coverage`` as for ``uehead predict``."""

    def make():
        from uehead.runtime import load
        from uehead.runtime.batch_schema import columns_for_model, predict_columns

        model = load(bundle, threads=threads)  # threads = spark.task.cpus
        columns = columns_for_model(model, **column_options)
        num_classes = len(model.labels)

        def predict(texts: np.ndarray) -> dict[str, np.ndarray]:
            values = np.atleast_1d(texts).tolist()  # Spark squeezes a one-row batch to 0-d
            n = len(values)
            cols = predict_columns(model, values, [None] * n, batch_size=batch_size, columns=columns)
            out = {}
            for name in columns.names:
                if name == "probs":
                    out[name] = np.array([p if p is not None else [np.nan] * num_classes for p in cols[name]],
                                         dtype=np.float64).reshape(n, num_classes)
                elif name == "prediction_set":
                    padded = np.full((n, num_classes), None, dtype=object)
                    for i, labels in enumerate(cols[name]):
                        padded[i, :len(labels or ())] = labels or ()
                    out[name] = padded
                elif name in ("label", "label_id", "accept", "error"):
                    out[name] = np.array(cols[name], dtype=object)  # None stays a null
                else:  # a score or p_error
                    out[name] = np.array([np.nan if v is None else v for v in cols[name]], dtype=np.float64)
            return out

        return predict

    return make


def _spark_type(arrow_type):
    """The Spark SQL type of one of the batch schema's Arrow types."""
    import pyarrow as pa
    from pyspark.sql.types import ArrayType, BooleanType, DoubleType, LongType, StringType

    if pa.types.is_list(arrow_type):
        return ArrayType(_spark_type(arrow_type.value_type))
    return {pa.float64(): DoubleType(), pa.int64(): LongType(), pa.string(): StringType(),
            pa.bool_(): BooleanType()}[arrow_type]


def score(df, bundle: str, *, text_column: str = "text", threads: int = 1, batch_size: int = 256,
          **column_options):
    """``df`` with the prediction columns appended (nulls, not NaN, on rows without a usable text)."""
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import functions as F
    from pyspark.sql.types import StructField, StructType

    from uehead.runtime.batch_schema import columns_for_bundle, prediction_arrow_schema

    columns = columns_for_bundle(bundle, **column_options)  # the workers derive the same from the bundle
    arrow = prediction_arrow_schema(columns=columns)
    struct = StructType([StructField(name, _spark_type(arrow.field(name).type)) for name in columns.names])
    udf = predict_batch_udf(make_predict_fn(bundle, threads=threads, **column_options), return_type=struct,
                            batch_size=batch_size)
    scored = df.withColumn("_uehead", udf(text_column))
    ok = F.col("_uehead.error").isNull()

    def column(name):
        value = F.col(f"_uehead.{name}")
        if name == "prediction_set":
            value = F.filter(value, lambda label: label.isNotNull())
        return F.when(ok, value).alias(name)

    return scored.select(*df.columns, *[column(c) for c in columns.names[:-1]], F.col("_uehead.error").alias("error"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle")
    p.add_argument("input")
    p.add_argument("output_dir")
    p.add_argument("--text-column", default="text", help="column holding the texts (default: text)")
    p.add_argument("--threads", type=int, default=1,
                   help="ONNX Runtime threads per task; set spark.task.cpus to match (default: 1)")
    p.add_argument("--scores", default=None, help="comma list of score columns (default: every score)")
    a = p.parse_args(argv)

    from pyspark.sql import SparkSession

    scores = None if a.scores is None else tuple(s.strip() for s in a.scores.split(",") if s.strip())
    spark = SparkSession.builder.appName("uehead-predict").getOrCreate()
    try:
        score(spark.read.parquet(a.input), a.bundle, text_column=a.text_column, threads=a.threads, scores=scores) \
            .write.mode("overwrite").parquet(a.output_dir)
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
