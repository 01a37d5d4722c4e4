r"""BENCHMARKS.md's phase table: every phase of a DiffKG epoch (diffusion
step, rebuild, recommendation step) and the training steps of KGIN, KGAT
and KGCL against their kernel floors (``speed_step.py --floor``, see
:mod:`floors`), on each dataset at each thread count, each case in its own
process, appended to one results file. Cases already in the file for the
package's commit are skipped, so an interrupted run resumes; the table of
the commit is printed at the end.

    python benchmarks/speed_phases.py --data-root ../shared/data \
        --output benchmarks/results/phases.jsonl
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys

from speed_step import phase_table

from diffkg_pyg.version import package_commit

HERE = osp.dirname(osp.abspath(__file__))
DATASETS = ('lastfm-hetrec2011', 'last-fm', 'alibaba-ifashion')
#: (model, phase, steps, warmup) of every case.
CASES = (('diffkg', 'diffusion', 6, 2), ('diffkg', 'rebuild', 2, 1),
         ('diffkg', 'recommendation', 4, 1), ('kgin', 'step', 4, 1),
         ('kgat', 'step', 4, 1), ('kgcl', 'step', 4, 1))


def done(path: str, commit: str) -> set:
    r"""The (data, model, phase, threads) of the floor records of
    :obj:`commit` in :obj:`path`."""
    if not osp.exists(path):
        return set()
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return {(r['data'], r['model'], r['phase'], r['threads'])
            for r in records if r['commit'] == commit and
            r.get('implementation') == 'floor'}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data-root', default='../shared/data')
    parser.add_argument('--datasets', nargs='+', default=list(DATASETS))
    parser.add_argument('--threads', nargs='+', type=int, default=[2, 1])
    parser.add_argument('--models', nargs='+', default=None,
                        help='only these models (default: all)')
    parser.add_argument('--rounds', type=int, default=2)
    parser.add_argument('--output', required=True)
    args = parser.parse_args()
    commit = package_commit()
    finished = done(args.output, commit)
    for threads in args.threads:
        for name in args.datasets:
            for model, phase, steps, warmup in CASES:
                if args.models and model not in args.models:
                    continue
                if (name, model, phase, threads) in finished:
                    continue
                command = [sys.executable, osp.join(HERE, 'speed_step.py'),
                           '--data', osp.join(args.data_root, name),
                           '--model', model, '--threads', str(threads),
                           '--steps', str(steps), '--warmup', str(warmup),
                           '--rounds', str(args.rounds), '--floor',
                           '--output', args.output]
                if model == 'diffkg':
                    command += ['--phase', phase]
                print(f'{name} {model} {phase} {threads} thread(s)',
                      file=sys.stderr, flush=True)
                subprocess.run(command, check=True, env={
                    **os.environ, 'OMP_NUM_THREADS': str(threads)})
    print(phase_table(args.output, commit[:7]))


if __name__ == '__main__':
    main()
