"""The shipped MBPP+ run file: DASH on the 264 train tasks, evaluation on the 114 test tasks."""

from dashrl.config import load_config
from dashrl.data.tasks import make_task
from dashrl.train.evaluation import load_eval_sets


def test_mbppplus_config_trains_on_264_tasks_and_evaluates_on_the_other_114():
    cfg = load_config("mbppplus")
    assert (cfg.algo.schedule, cfg.task.name, cfg.task.split) == ("dash", "mbppplus", "train")
    task = make_task(cfg.task, cfg.train.seed)
    train_ids = {task.get(i).id for i in range(task.size)}
    assert task.size == len(train_ids) == 264
    test = load_eval_sets(cfg.eval.dataset_names, cfg.eval.limit)["mbppplus"]
    assert len(test) == 114 and not train_ids & {ex.id for ex in test}
    assert all(ex.kind == "code" and ex.tests for ex in test)  # graded by running the tests in the sandbox
