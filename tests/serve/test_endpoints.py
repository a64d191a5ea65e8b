"""Every endpoint against ``Model.predict`` on the same texts (to 1e-6, in input order)."""
from __future__ import annotations

import numpy as np
import pytest

from serve_client import get, post, random_texts

TOL = 1e-6


def assert_rows_match(rows, preds):
    assert [r["label"] for r in rows] == preds.labels
    assert [r["label_id"] for r in rows] == preds.label_ids.tolist()
    np.testing.assert_allclose([r["probs"] for r in rows], preds.probs, atol=TOL, rtol=0)
    np.testing.assert_allclose([r["uncertainty"] for r in rows], preds.uncertainty, atol=TOL, rtol=0)
    assert {r["uncertainty_kind"] for r in rows} == {preds.uncertainty_kind}
    for name, values in preds.scores.items():
        np.testing.assert_allclose([r["scores"][name] for r in rows], values, atol=TOL, rtol=0)
    assert all(set(r["scores"]) == set(preds.scores) for r in rows)


def test_classify_equals_predict_in_input_order(server, tiny_model):
    texts = random_texts(40, seed=3) + ["", "a great film"]
    reply = post(server.url + "/classify", {"texts": texts})
    assert reply.status == 200, reply.body
    assert reply.body["labels"] == list(tiny_model.labels)
    assert_rows_match(reply.body["predictions"], tiny_model.predict(texts))


def test_classify_one_string_and_distances(server, tiny_model):
    reply = post(server.url + "/classify", {"texts": "bad and boring", "distances": True})
    assert reply.status == 200, reply.body
    preds = tiny_model.predict(["bad and boring"], distances=True)
    assert {"md", "rmd"} <= set(preds.scores)
    assert_rows_match(reply.body["predictions"], preds)


def test_classify_empty_list(server):
    reply = post(server.url + "/classify", {"texts": []})
    assert reply.status == 200 and reply.body["predictions"] == []


def test_tei_predict_single_and_batch(server, tiny_model):
    texts = random_texts(5, seed=4)
    preds = tiny_model.predict(texts)
    one = post(server.url + "/predict", {"inputs": texts[0]})
    assert one.status == 200, one.body
    same = post(server.url + "/predict", {"inputs": [texts[0]]})
    assert same.body == one.body
    batch = post(server.url + "/predict", {"inputs": [[t] for t in texts]})
    assert batch.status == 200, batch.body
    assert batch.body[0] == one.body and len(batch.body) == len(texts)
    for ranked, probs in zip(batch.body, preds.probs):
        assert [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)
        by_label = {r["label"]: r["score"] for r in ranked}
        np.testing.assert_allclose([by_label[lab] for lab in tiny_model.labels], probs, atol=TOL, rtol=0)


def test_tei_raw_scores_are_log_probabilities(server, tiny_model):
    reply = post(server.url + "/predict", {"inputs": [["a great film"]], "raw_scores": True})
    assert reply.status == 200, reply.body
    by_label = {r["label"]: r["score"] for r in reply.body[0]}
    probs = tiny_model.predict(["a great film"]).probs[0]
    np.testing.assert_allclose([by_label[lab] for lab in tiny_model.labels], np.log(probs), atol=1e-5, rtol=0)


@pytest.mark.parametrize("inputs, fragment", [
    (["a great film", "dull"], "pair of texts"),
    (["a", "b", "c"], "flat array of 3"),
    ([["a"], ["b", "c"]], "inputs[1] is a text pair"),
    ([["a"], "b"], "inputs[1] is not a one-element array"),
    ([], "non-empty"),
])
def test_tei_refuses_what_it_cannot_classify(server, inputs, fragment):
    reply = post(server.url + "/predict", {"inputs": inputs})
    assert reply.status == 422 and fragment in reply.body["error"], reply.body
    assert reply.body["error_type"] == "validation" and '[["text 1"], ["text 2"]]' in reply.body["error"]


def infer_body(texts, **extra):
    return {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}], **extra}


def tensors(reply):
    return {o["name"]: o for o in reply.body["outputs"]}


def test_v2_infer_equals_predict(server, tiny_model):
    texts = random_texts(12, seed=5)
    reply = post(server.url + "/v2/models/tiny/infer", infer_body(texts, id="req-1"))
    assert reply.status == 200, reply.body
    assert reply.body["model_name"] == "tiny" and reply.body["id"] == "req-1"
    out, preds = tensors(reply), tiny_model.predict(texts)
    assert out["label"]["datatype"] == "BYTES" and out["label"]["data"] == preds.labels
    assert out["label_id"] == {"name": "label_id", "datatype": "INT64", "shape": [12],
                               "data": preds.label_ids.tolist()}
    assert out["probs"]["shape"] == [12, 2] and out["probs"]["datatype"] == "FP32"
    np.testing.assert_allclose(np.reshape(out["probs"]["data"], (12, 2)), preds.probs, atol=TOL, rtol=0)
    np.testing.assert_allclose(out["uncertainty"]["data"], preds.uncertainty, atol=TOL, rtol=0)
    for name, values in preds.scores.items():
        np.testing.assert_allclose(out[name]["data"], values, atol=TOL, rtol=0)


def test_v2_infer_picks_outputs_and_takes_n_by_1(server, tiny_model):
    body = {"inputs": [{"name": "text", "shape": [2, 1], "datatype": "BYTES", "data": [["good"], ["bad"]]}],
            "outputs": [{"name": "rmd"}, {"name": "label"}]}
    reply = post(server.url + "/v2/models/tiny/infer", body)
    assert reply.status == 200, reply.body
    assert [o["name"] for o in reply.body["outputs"]] == ["rmd", "label"]
    preds = tiny_model.predict(["good", "bad"], distances=True)
    np.testing.assert_allclose(reply.body["outputs"][0]["data"], preds.scores["rmd"], atol=TOL, rtol=0)


@pytest.mark.parametrize("body, fragment", [
    ({"inputs": [{"name": "texts", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}, "named 'text'"),
    ({"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}]}, "BYTES"),
    ({"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": ["a"]}]}, "holds 3 elements"),
    ({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a", 7]}]}, "inputs[0].data[1]"),
    ({**infer_body(["a"]), "outputs": [{"name": "logits"}]}, "'logits' do not exist"),
    ({**infer_body(["a"]), "parameters": {"risk": 0.1}}, "not calibrated"),
])
def test_v2_infer_refusals_name_the_field(server, body, fragment):
    reply = post(server.url + "/v2/models/tiny/infer", body)
    assert reply.status == 422 and fragment in reply.body["error"], reply.body


def test_v2_metadata_health_and_unknown_model(server, tiny_model):
    assert get(server.url + "/v2/health/live").body == {"live": True}
    assert get(server.url + "/v2/health/ready").body == {"ready": True}
    assert get(server.url + "/v2/models/tiny/ready").status == 200
    assert get(server.url + "/v2").body["name"] == "uehead"
    meta = get(server.url + "/v2/models/tiny").body
    assert meta["name"] == "tiny" and meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    names = [o["name"] for o in meta["outputs"]]
    assert names == ["label", "label_id", "probs", "uncertainty", "sr", "entropy", "adue", "alien", "md", "rmd"]
    assert meta["parameters"]["labels"] == list(tiny_model.labels)
    for url in ("/v2/models/other", "/v2/models/other/ready"):
        reply = get(server.url + url)
        assert reply.status == 404 and "serves 'tiny'" in reply.body["error"]
    reply = post(server.url + "/v2/models/other/infer", infer_body(["a"]))
    assert reply.status == 404 and "serves 'tiny'" in reply.body["error"]


def test_unknown_path_and_method_answer_json(server):
    reply = get(server.url + "/nowhere")
    assert reply.status == 404 and "POST /classify" in reply.body["error"]
    reply = get(server.url + "/classify")
    assert reply.status == 405 and reply.body["error_type"] == "validation"


def test_metrics_exposition(server):
    post(server.url + "/classify", {"texts": ["a", "b"]})
    post(server.url + "/classify", {"texts": 5})
    text = get(server.url + "/metrics").body
    assert 'uehead_requests_total{endpoint="classify",status="200"}' in text
    assert 'uehead_requests_total{endpoint="classify",status="422"}' in text
    assert 'uehead_request_duration_seconds_bucket{endpoint="classify",le="0.005"}' in text
    assert "uehead_batch_texts_bucket" in text and "uehead_queue_texts 0.0" in text


def test_calibrated_bundle_gives_decisions(calibrated_serve_bundle, serve_model):
    from uehead import runtime

    model = runtime.load(calibrated_serve_bundle, threads=1)
    running = serve_model(model, model_name="cal")
    texts = random_texts(20, seed=6)
    cal = model.calibration
    risk, coverage = cal.risks[-1], cal.coverages[-1]
    for options in ({}, {"risk": risk, "coverage": coverage}):
        preds = model.predict(texts, **options)
        reply = post(running.url + "/classify", {"texts": texts, **options})
        assert reply.status == 200, reply.body
        rows = reply.body["predictions"]
        assert_rows_match(rows, preds)
        np.testing.assert_allclose([r["p_error"] for r in rows], preds.p_error, atol=TOL, rtol=0)
        assert [r["accept"] for r in rows] == preds.accept.tolist()
        assert [tuple(r["prediction_set"]) for r in rows] == preds.prediction_sets
        assert (reply.body["risk"], reply.body["coverage"]) == (preds.risk, preds.coverage)
    out = tensors(post(running.url + "/v2/models/cal/infer", infer_body(texts)))
    preds = model.predict(texts)
    assert out["accept"]["datatype"] == "BOOL" and out["accept"]["data"] == preds.accept.tolist()
    mask = np.reshape(out["prediction_set"]["data"], (len(texts), len(model.labels)))
    assert [tuple(np.asarray(model.labels)[row].tolist()) for row in mask] == preds.prediction_sets
    reply = post(running.url + "/classify", {"texts": texts, "risk": 0.3333})
    assert reply.status == 422 and "stored risk levels" in reply.body["error"]
