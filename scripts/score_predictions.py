#!/usr/bin/env python3
"""Scores a batch_predict output against its label column (run by hand, not in CI).

    scripts/score_predictions.py PREDICTIONS.csv [NAME]

Prints one tab-separated line: name, rows, accuracy, balanced accuracy, the share of
positives in the truth and in the predictions, and the expected calibration error (15 bins)
of the confidence column. Labels are 0/1 (negative/positive), as preprocess writes them.
"""
import csv
import sys


def main():
    path = sys.argv[1]
    name = sys.argv[2] if len(sys.argv) > 2 else path
    truth, pred, conf = [], [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if not row.get("sentiment"):
                continue
            truth.append(int(row["label"]))
            pred.append(1 if row["sentiment"] == "positive" else 0)
            conf.append(float(row["confidence"]))
    n = len(truth)
    right = [t == p for t, p in zip(truth, pred)]
    recall = []
    for c in (0, 1):
        idx = [i for i in range(n) if truth[i] == c]
        recall.append(sum(right[i] for i in idx) / max(1, len(idx)))
    bins = [[0, 0.0, 0] for _ in range(15)]
    for c, ok in zip(conf, right):
        b = bins[min(14, int(c * 15))]
        b[0] += 1
        b[1] += c
        b[2] += ok
    ece = sum(abs(b[2] / b[0] - b[1] / b[0]) * b[0] / n for b in bins if b[0])
    print(f"{name}\t{n}\t{sum(right) / n:.4f}\t{sum(recall) / 2:.4f}\t"
          f"{sum(truth) / n:.3f}\t{sum(pred) / n:.3f}\t{ece:.4f}")


if __name__ == "__main__":
    main()
