"""The Spark equivalent of the Ray engine: ``pyspark.ml.functions.predict_batch_udf`` around the same runtime.

    spark-submit examples/spark_predict_udf.py BUNDLE INPUT.parquet OUTPUT_DIR [--threads 1]

``make_predict_fn(bundle)`` returns the function Spark calls once per Python worker: it loads the
bundle (at the same path on every executor) and returns ``predict(texts) -> dict of numpy arrays``
in the shape ``predict_batch_udf`` requires for a struct result (``probs`` 2-D, the rest 1-D, one
row per text). Rows without a usable text get NaN scores there, because a 2-D float array cannot hold
a null row; :func:`score` turns them back into nulls, so the columns and error rows are those of
``uehead predict``.

What is tested here (tests/runtime/test_ray_data.py, no Spark needed): ``make_predict_fn`` against
``Model.predict`` and the shapes ``predict_batch_udf`` checks. What is not run in this project (no
JVM / pyspark in its environments): :func:`score` and :func:`main`, the Spark wiring.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from uehead.runtime.batch_schema import PREDICTION_COLUMNS

SCORE_FIELDS = PREDICTION_COLUMNS[:-1]  # the batch job's columns, all but ``error``


def make_predict_fn(bundle: str, *, threads: int = 1, batch_size: int = 32):
    """``make_predict_fn`` for ``predict_batch_udf``: loads the bundle once per Python worker."""

    def make():
        from uehead.runtime import load
        from uehead.runtime.batch_schema import predict_columns

        model = load(bundle, threads=threads)  # threads = spark.task.cpus
        num_classes = len(model.labels)

        def predict(texts: np.ndarray) -> dict[str, np.ndarray]:
            values = np.atleast_1d(texts).tolist()  # Spark squeezes a one-row batch to 0-d
            cols = predict_columns(model, values, [None] * len(values), batch_size=batch_size)
            probs = np.array([p if p is not None else [np.nan] * num_classes for p in cols["probs"]],
                             dtype=np.float64).reshape(len(values), num_classes)
            out = {"probs": probs}
            for name in ("uncertainty", "softmax_response", "entropy"):
                out[name] = np.array([np.nan if v is None else v for v in cols[name]], dtype=np.float64)
            for name in ("label", "label_id", "error"):
                out[name] = np.array(cols[name], dtype=object)  # None stays a null
            return out

        return predict

    return make


def score(df, bundle: str, *, text_column: str = "text", threads: int = 1, batch_size: int = 256):
    """``df`` with the prediction columns appended (nulls, not NaN, on rows without a usable text)."""
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, DoubleType, LongType, StringType, StructField, StructType

    # The batch job's columns, in its order.
    struct = StructType([StructField("label", StringType()), StructField("label_id", LongType()),
                         StructField("probs", ArrayType(DoubleType())), StructField("uncertainty", DoubleType()),
                         StructField("softmax_response", DoubleType()), StructField("entropy", DoubleType()),
                         StructField("error", StringType())])
    udf = predict_batch_udf(make_predict_fn(bundle, threads=threads), return_type=struct, batch_size=batch_size)
    scored = df.withColumn("_uehead", udf(text_column))
    ok = F.col("_uehead.error").isNull()
    return scored.select(*df.columns, *[F.when(ok, F.col(f"_uehead.{c}")).alias(c) for c in SCORE_FIELDS],
                         F.col("_uehead.error").alias("error"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle")
    p.add_argument("input")
    p.add_argument("output_dir")
    p.add_argument("--text-column", default="text")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per task; set spark.task.cpus to match")
    a = p.parse_args(argv)

    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName("uehead-predict").getOrCreate()
    try:
        score(spark.read.parquet(a.input), a.bundle, text_column=a.text_column, threads=a.threads) \
            .write.mode("overwrite").parquet(a.output_dir)
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
