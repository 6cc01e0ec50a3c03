"""Training across machines with TensorFlow's MultiWorkerMirroredStrategy.

Keras 3's `fit()` does not run under this strategy (keras-team/keras#20585), so the
workers step through a small custom loop instead: each replica computes gradients
on its own batch, `apply_gradients` sums them across every worker, and all
workers end each step with the same weights. Keras's own callbacks (early
stopping, DVCLive) run on top of it unchanged.

Each worker reads only its slice of the training images, so the frozen backbone
pass of the cached-feature recipe is split across the machines too. Every worker
scores the whole validation split: the same weights on the same images give the
same validation loss everywhere, so early stopping stops all workers at once.
The cluster comes from the standard `TF_CONFIG` environment variable.
"""

import json
import math
import os

import keras
import numpy as np
import tensorflow as tf


def tf_config() -> dict:
    """The cluster and this process's task, from `TF_CONFIG`; a clear error when it is missing or malformed."""
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        raise ValueError("strategy 'multi_worker' needs TF_CONFIG, e.g. "
                         '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}')
    try:
        config = json.loads(raw)
        config["cluster"], config["task"]["type"], config["task"]["index"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"TF_CONFIG is not a cluster description with a task type and index: {raw!r}") from error
    return config


def is_chief() -> bool:
    """True outside a cluster, and for the one task that writes outputs: `chief`, else worker 0."""
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return True
    config = tf_config()
    task = config["task"]
    if "chief" in config["cluster"]:
        return task["type"] == "chief"
    return task["type"] == "worker" and int(task["index"]) == 0


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def worker_slice(strategy: tf.distribute.Strategy) -> slice:
    """This worker's share of a list of examples: every n-th one, starting at its position in the cluster."""
    if not is_multi_worker(strategy):
        return slice(None)
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    tasks = [("chief", i) for i in range(len(cluster.get("chief", [])))]
    tasks += [("worker", i) for i in range(len(cluster.get("worker", [])))]
    resolver = strategy.cluster_resolver
    return slice(tasks.index((resolver.task_type, resolver.task_id)), None, len(tasks))


def fit_across_workers(model: keras.Model, strategy: tf.distribute.Strategy, train: tf.data.Dataset,
                       val: tf.data.Dataset, *, train_size: int, epochs: int, batch_size: int,
                       class_weight: dict | None, callbacks: list, batch_transform=None) -> None:
    """`model.fit` for MultiWorkerMirroredStrategy.

    `train` is this worker's slice of (x, label) pairs, unbatched; `val` the whole validation split.
    `train_size` counts the training examples of all workers together: every worker takes
    `ceil(train_size / batch_size)` steps per epoch, so no worker waits on a collective the others skipped.
    `batch_size` is global, as in `fit`. `model` must be compiled in `strategy.scope()`: its optimizer
    and its loss (a `fit.training_loss`) are used.
    """
    steps = max(1, math.ceil(train_size / batch_size))
    local = train.shuffle(max(1, train_size), reshuffle_each_iteration=True).repeat()

    def per_worker(context: tf.distribute.InputContext) -> tf.data.Dataset:
        batches = local.batch(context.get_per_replica_batch_size(batch_size), drop_remainder=True)
        if batch_transform is not None:
            batches = batches.map(batch_transform, num_parallel_calls=tf.data.AUTOTUNE)
        return batches.prefetch(tf.data.AUTOTUNE)

    iterator = iter(strategy.distribute_datasets_from_function(per_worker))
    num_classes = model.output_shape[-1]
    weights = tf.constant([class_weight.get(c, 1.0) if class_weight else 1.0 for c in range(num_classes)], tf.float32)

    def replica_step(x, y):
        y = tf.cast(y, tf.int32)
        with tf.GradientTape() as tape:
            probabilities = model(x, training=True)
            # The compiled loss, unreduced: cross-entropy against one-hot labels (smoothed if the model asks).
            per_example = model.loss.call(tf.one_hot(y, num_classes), probabilities) * tf.gather(weights, y)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=batch_size)
            scaled = model.optimizer.scale_loss(loss)  # a no-op unless mixed precision wrapped the optimizer
        gradients = tape.gradient(scaled, model.trainable_variables)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probabilities, -1, output_type=tf.int32), y), tf.float32))
        return loss, correct

    @tf.function
    def train_step():
        loss, correct = strategy.run(replica_step, args=next(iterator))
        return strategy.reduce("SUM", loss, axis=None), strategy.reduce("SUM", correct, axis=None)

    average_statistics = _statistics_averager(model, strategy)
    callback_list = keras.callbacks.CallbackList(callbacks, model=model, epochs=epochs, steps=steps)
    model.stop_training = False
    callback_list.on_train_begin()
    for epoch in range(epochs):
        callback_list.on_epoch_begin(epoch)
        losses, correct = zip(*(train_step() for _ in range(steps)))
        average_statistics()
        logs = {"loss": float(np.mean(losses)), "accuracy": float(np.sum(correct)) / (steps * batch_size),
                **_score(model, val, batch_size)}
        print(f"Epoch {epoch + 1}/{epochs} - " + " - ".join(f"{key}: {value:.4f}" for key, value in logs.items()),
              flush=True)
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end()


def _statistics_averager(model: keras.Model, strategy: tf.distribute.Strategy):
    """A function that sets BatchNorm's moving statistics to their mean over all workers.

    Gradients are summed across workers at every step, but each worker updates its moving statistics from its
    own batches; averaging them once per epoch, before validation, keeps the workers' models identical.
    """
    statistics = [w for w in model.non_trainable_weights if "float" in str(w.dtype)]

    @tf.function
    def means():
        local = strategy.run(lambda: [tf.identity(w.value) for w in statistics])
        return [strategy.reduce("MEAN", value, axis=None) for value in local]

    def average() -> None:
        if statistics:
            for weight, mean in zip(statistics, means()):
                weight.assign(mean)

    return average


def _score(model: keras.Model, val: tf.data.Dataset, batch_size: int) -> dict:
    """Unweighted validation loss and accuracy, computed locally: every worker holds the same weights."""
    total_loss, correct, count = 0.0, 0, 0
    for x, y in val.batch(batch_size):
        probabilities = model(x, training=False)
        one_hot = tf.one_hot(tf.cast(y, tf.int32), probabilities.shape[-1])
        total_loss += float(tf.reduce_sum(model.loss.call(one_hot, probabilities)))
        correct += int(tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probabilities, -1), tf.cast(y, tf.int64)), tf.int32)))
        count += int(tf.shape(y)[0])
    return {"val_loss": total_loss / max(count, 1), "val_accuracy": correct / max(count, 1)}
