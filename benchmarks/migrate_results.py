r"""Rewrites result JSONs written before results named their dataset (they
record it as the path given on the command line, a path of the machine
they ran on) into the current form: ``{'name', 'layout', 'fingerprint'}``
(:func:`diffkg_pyg.train.results.dataset_record`).

The fingerprint is computed by loading the dataset again with the split
every benchmark command used (the defaults: ``--val-ratio 0.1
--split-seed 0``); a trial of a tuning study ran on the data without its
test interactions, and gets that data's fingerprint. Each rewritten record
says so under ``dataset.migrated``. Run from the repository root::

    python benchmarks/migrate_results.py benchmarks/results
"""
import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from diffkg_pyg.data import load_dataset  # noqa: E402
from diffkg_pyg.files import save_json  # noqa: E402
from diffkg_pyg.train.checkpoint import fingerprint  # noqa: E402
from diffkg_pyg.train.results import dataset_record  # noqa: E402
from diffkg_pyg.train.tuning import without_test  # noqa: E402

NOTE = ('added by benchmarks/migrate_results.py from the recorded path; '
        'fingerprint of the data as loaded with the default split '
        '(val_ratio 0.1, split_seed 0){}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('results', help='folder of result JSONs')
    parser.add_argument('--data-root', default='../shared/data',
                        help='where the datasets named in them live')
    args = parser.parse_args()
    cache = {}
    for folder, _, files in sorted(os.walk(args.results)):
        for file in sorted(files):
            if not file.endswith('.json'):
                continue
            path = osp.join(folder, file)
            with open(path) as f:
                try:
                    record = json.load(f)
                except json.JSONDecodeError:
                    continue
            if not isinstance(record, dict) or \
                    not isinstance(record.get('dataset'), str):
                continue
            name = osp.basename(osp.normpath(record['dataset']))
            trial = osp.basename(folder) == 'trials'
            if (name, trial) not in cache:
                source = name if name == 'synthetic' else \
                    osp.join(args.data_root, name)
                data = load_dataset(source, log=False)
                if trial:
                    data = without_test(data)
                cache[name, trial] = dataset_record(data, fingerprint(data))
            record['dataset'] = {**cache[name, trial], 'migrated': NOTE.format(
                '; a tuning trial: the data without its test interactions'
                if trial else '')}
            save_json(path, record)
            print(f'{path}: {name}')


if __name__ == '__main__':
    main()
