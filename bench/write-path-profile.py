#!/usr/bin/env python3
"""Puts each sample of a `perf record --call-graph dwarf` profile of the server into the
first bucket whose frames it contains, and attributes allocator/copy leaf samples to the
nearest caller of ours (sled, tantivy, hyper, serde_json, adledger).

    perf record -F 499 --call-graph dwarf,16384 -p SERVER -o perf.data -- sleep 8
    perf script -i perf.data --no-inline -F comm,tid,ip,sym > samples.txt
    python3 bench/write-path-profile.py samples.txt

Buckets are for the create path (see bench/README.md, "The write path, attributed").
"""
import collections
import re
import sys


def samples(path):
    out, cur = [], None
    for line in open(path):
        if not line.strip():
            if cur:
                out.append(cur)
            cur = None
            continue
        if not line.startswith('\t'):
            cur = (line[:16].strip(), [])
            continue
        parts = line.strip().split(' ', 1)
        cur[1].append(parts[1] if len(parts) > 1 else '?')
    if cur:
        out.append(cur)
    return out


def has(stack, *subs):
    return any(any(s in f for s in subs) for f in stack)


RULES = [
    ('tantivy indexing thread: per-segment work (files, writers, serialize)',
     lambda c, st: c.startswith('thrd-tantivy') and has(
         st, 'finalize', 'SegmentSerializer', 'for_segment', 'InvertedIndexSerializer', 'open_write')),
    ('tantivy indexing thread: add documents', lambda c, st: c.startswith('thrd-tantivy')),
    ('tantivy merge threads', lambda c, st: c.startswith('merge_thread')),
    ('tantivy segment updater (commit, gc)', lambda c, st: c.startswith('segment_upd')),
    ('tantivy docstore compressor', lambda c, st: c.startswith('docstore')),
    ('sled io threads', lambda c, st: c.startswith('sled-io')),
    ('sled log flusher', lambda c, st: c.startswith('log flush')),
    ('journal fsync (Durability::sync)', lambda c, st: has(st, 'Durability::sync')),
    ('journal append: checks (plan_write)', lambda c, st: has(st, 'journal::plan_write')),
    ('journal append: sled apply_batch', lambda c, st: has(st, 'Reopenable<T>::write')),
    ('projection: journal read_blocks', lambda c, st: has(st, 'read_blocks_blocking')),
    ('state projection: sled apply (apply_blocking)', lambda c, st: has(st, 'state::apply_blocking')),
    ('search projection: tantivy apply on the pool', lambda c, st: has(st, 'adledger_tantivy::index::Inner::apply')),
    ('projection: block::open (Ion decode + SHA)', lambda c, st: has(st, 'block::open')),
    ('projection: other (revision clones, tasks)',
     lambda c, st: has(st, 'Projector::run', 'StateStore>::apply', 'SearchIndex>::apply')),
    ('committer: seal (Ion encode, SHA)', lambda c, st: has(st, 'block::seal_with')),
    ('committer: create fingerprint', lambda c, st: has(st, 'create_fingerprint')),
    ('committer: other (batch, heads, plan)', lambda c, st: has(st, 'Committer::')),
    ('HTTP: body read + JSON parse', lambda c, st: has(st, 'body::read_json', 'parse_json')),
    ('HTTP: AdDraft::from_json', lambda c, st: has(st, 'AdDraft::from_json')),
    ('HTTP: response AdView serialize', lambda c, st: has(st, 'AdView>::serialize', 'ad_view::')),
    ('HTTP: hyper write (syscalls)', lambda c, st: has(st, 'poll_write', 'poll_flush') and has(st, 'hyper::')),
    ('HTTP: hyper read (syscalls)', lambda c, st: has(st, 'poll_read') and has(st, 'hyper::')),
    ('HTTP: other (hyper, axum, middleware, tracing)', lambda c, st: has(st, 'edge::serve', 'hyper::', 'axum::')),
    ('tokio scheduler/park/futex', lambda c, st: has(st, 'tokio::runtime')),
]
ALLOC = re.compile(r'memmove|memcpy|malloc|_rjem|free|realloc|Vec<T,A> as core::clone::Clone|extend_with|memset|drop_in_place')
OURS = ('adledger', 'sled::', 'tantivy', 'hyper', 'serde_json')


def main():
    all_samples = samples(sys.argv[1])
    total = len(all_samples)
    counts = collections.Counter()
    owners = collections.Counter()
    copies = 0
    for comm, stack in all_samples:
        for name, rule in RULES:
            if rule(comm, stack):
                counts[name] += 1
                break
        else:
            counts['other'] += 1
        if stack and ALLOC.search(stack[0]):
            copies += 1
            owner = next((f for f in stack[1:] if f.startswith(OURS)), '?')
            owners[owner.replace('{{closure}}', '')[:110]] += 1
    print(f'{total} samples')
    for name in [r[0] for r in RULES] + ['other']:
        if counts[name]:
            print(f'{100 * counts[name] / total:6.1f}%  {counts[name]:5d}  {name}')
    print(f'\nallocator/copy leaf samples: {copies} ({100 * copies / max(total, 1):.1f}%), by nearest caller:')
    for owner, n in owners.most_common(25):
        print(f'{100 * n / total:5.1f}% {n:5d} {owner}')


if __name__ == '__main__':
    main()
