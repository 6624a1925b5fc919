"""The AlgoPerf study sweeper for Hydra (selected by `tuning=external|self` with `-m`).

    python -m algoperf_torch -m workload=digits optimizer=nadamw tuning=external

Lives under the `hydra_plugins` namespace package because Hydra discovers sweepers only there.
"""
