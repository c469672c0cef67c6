#!/usr/bin/env python3
"""Builds the long-document proxy: pseudo-reviews of 400-1,500 words (run by hand, not in CI).

    scripts/long_documents.py RAW_SNIPPETS.csv PROCESSED_TEST.csv OUT.csv [MIX]

Takes the Rotten Tomatoes snippets (text,label,movie_name) whose cleaned text is in a
processed test split (so no model trained on that split has seen them), groups them by movie
and label, and joins each group, in a seeded order, into one text when it reaches 400 words
(cut at 1,500). A movie's reviews are long documents of one verdict, as full reviews are.

MIX (default 0) mixes in the other verdict's snippets of the same movie, up to MIX times the
verdict's own (e.g. 0.5: two sentences for, one against), as a full review weighs both sides;
the label stays the majority's. With MIX 0 the task is easy; with 0.5 the part a truncated
reading keeps may hold the minority's sentences.
"""
import csv
import html
import random
import sys
from collections import defaultdict


def cleaned(text):
    # What preprocess's default cleaning does to these plain sentences.
    return " ".join(html.unescape(text).lower().split())


def main():
    raw, test, out = sys.argv[1:4]
    mix = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    with open(test, newline="") as f:
        held_out = {row["text"] for row in csv.DictReader(f)}
    groups = defaultdict(list)
    with open(raw, newline="") as f:
        for row in csv.DictReader(f):
            if cleaned(row["text"]) in held_out:
                groups[(row["movie_name"], row["label"])].append(row["text"])
    rng = random.Random(42)
    docs = []
    for (movie, label), own in sorted(groups.items()):
        other = list(groups.get((movie, "0" if label == "1" else "1"), []))
        rng.shuffle(own)
        rng.shuffle(other)
        texts = own + other[: int(len(own) * mix)]
        rng.shuffle(texts)
        words = " ".join(texts).split()
        if len(words) >= 400:
            docs.append((" ".join(words[:1500]), label, movie))
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label", "movie_name"])
        w.writerows(docs)
    lengths = sorted(len(d[0].split()) for d in docs)
    print(f"{len(docs)} pseudo-reviews, {sum(int(d[1]) for d in docs)} positive, "
          f"median {lengths[len(lengths) // 2] if lengths else 0} words", file=sys.stderr)


if __name__ == "__main__":
    main()
