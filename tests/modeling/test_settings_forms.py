"""A hyperparameter is declared once: the library's settings dataclass makes both the command line's options and the
site's job form, with the same defaults, ranges and choices."""

import argparse
from dataclasses import fields

import pytest

from modeling.kinds.lsm import LSMPretrainForm
from modeling.kinds.sensorlm import SensorLMTrainForm
from modeling.kinds.twin import TwinTrainForm
from modeling.ml.common.settings import add_settings_arguments, setting_default, settings_from_arguments
from modeling.ml.lsm.pretrain import PretrainSettings
from modeling.ml.sensorlm.train import SensorLMTrainSettings
from modeling.ml.twin.training import TwinTrainSettings

FAMILIES = [
    (TwinTrainSettings, TwinTrainForm),
    (PretrainSettings, LSMPretrainForm),
    (SensorLMTrainSettings, SensorLMTrainForm),
]


@pytest.mark.parametrize(("settings_class", "form_class"), FAMILIES)
def test_the_form_and_the_command_line_take_the_settings_with_the_same_defaults(settings_class, form_class):
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser, settings_class)
    defaults = parser.parse_args([])
    for declared in fields(settings_class):
        field = form_class.base_fields[declared.name]
        assert field.initial == getattr(defaults, declared.name) == setting_default(declared), declared.name
        if declared.metadata.get("minimum") is not None:
            assert field.min_value == declared.metadata["minimum"]
    assert list(form_class.base_fields)[: len(fields(settings_class))] == [
        declared.name for declared in fields(settings_class)
    ]


def test_a_value_out_of_range_is_refused_by_both(capsys):
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser, TwinTrainSettings)
    with pytest.raises(SystemExit):
        settings_from_arguments(TwinTrainSettings, parser.parse_args(["--days", "10"]), parser)
    assert "days: 10 is below 90" in capsys.readouterr().err
    form = TwinTrainForm(data={"size": "tiny", "days": 10, "participants": 1, "steps": 1})
    assert not form.is_valid() and "days" in form.errors and "participants" in form.errors
    assert "steps" not in form.errors
    parsed = settings_from_arguments(TwinTrainSettings, parser.parse_args(["--steps", "40", "--size", "small"]), parser)
    assert parsed == TwinTrainSettings(steps=40, size="small")


@pytest.mark.django_db
def test_a_patch_that_does_not_tile_the_day_is_refused_by_both_naming_the_field(capsys):
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser, PretrainSettings)
    with pytest.raises(SystemExit):
        settings_from_arguments(PretrainSettings, parser.parse_args(["--patch-minutes", "7"]), parser)
    assert "patch_minutes: a patch of 7 minutes x 1 channel(s) must divide" in capsys.readouterr().err
    form = LSMPretrainForm(data={"size": "tiny", "patch_minutes": 10, "patch_channels": 4})
    assert not form.is_valid() and list(form.errors) == ["patch_minutes"]
    assert "must divide the day's 1,440 minutes and the 27 channels" in form.errors["patch_minutes"][0]
    assert LSMPretrainForm(data={"size": "tiny", "patch_minutes": 10, "patch_channels": 9}).is_valid()


def test_the_command_line_s_help_shows_every_setting(capsys):
    from modeling.ml.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["twin", "train", "--help"])
    shown = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert "--batch-size" in shown and "--checkpoint-every" in shown and "(80 % train, 20 % held out)" in shown


def test_the_old_spellings_of_the_command_line_still_work(monkeypatch):
    """``--levels`` (the committed demo model's command) is the sensor-language model's caption levels."""
    import modeling.ml.sensorlm.train as sensorlm_train
    from modeling.ml.__main__ import main

    asked = []
    monkeypatch.setattr(sensorlm_train, "train_sensorlm_with", lambda settings, **kwargs: asked.append(settings) or {})
    main(["sensorlm", "train", "--levels", "semantic", "--steps", "5", "--output", "/tmp/unused"])
    assert asked == [SensorLMTrainSettings(caption_levels=["semantic"], steps=5)]


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["lsm_pretrain", "sensorlm_train", "twin_train"])
def test_an_admin_queues_a_training_run_from_the_form_the_settings_make(client, admin_user, kind):
    from modeling.models import Job

    client.force_login(admin_user)
    page = client.get(f"/modeling/jobs/new/{kind}/").content.decode()
    assert (
        'name="batch_size"' in page and 'name="learning_rate"' in page and "Simulated participants (80 % train" in page
    )
    form_class = {"lsm_pretrain": LSMPretrainForm, "sensorlm_train": SensorLMTrainForm, "twin_train": TwinTrainForm}[
        kind
    ]
    values = {name: field.initial for name, field in form_class.base_fields.items() if field.initial is not None}
    posted = {name: value for name, value in values.items() if value is not False}
    response = client.post(f"/modeling/jobs/new/{kind}/", {**posted, "steps": 7})
    job = Job.objects.get(kind=kind)
    assert response.status_code == 302 and job.config["steps"] == 7 and job.config["size"] == "tiny"


def test_a_setting_left_empty_takes_its_default():
    # a ticked box is posted as "on" (the form shows it ticked when its default is True); an unticked one is absent
    form = TwinTrainForm(data={"steps": "12", "treatment_by_level": "on"})
    assert form.is_valid(), form.errors
    assert form.settings() == TwinTrainSettings(steps=12)
    unticked = TwinTrainForm(data={"steps": "12"})
    assert unticked.is_valid() and unticked.settings() == TwinTrainSettings(steps=12, treatment_by_level=False)
    assert TwinTrainForm().fields["treatment_by_level"].initial is True


def test_the_evaluation_s_settings_make_its_form_and_command_line_too():
    from modeling.kinds.lsm import LSMEvaluateForm
    from modeling.ml.lsm.report import ReportSettings

    parser = argparse.ArgumentParser()
    add_settings_arguments(parser, ReportSettings)
    parsed = settings_from_arguments(
        ReportSettings, parser.parse_args(["--few-shot", "2", "8", "--no-generative"]), parser
    )
    assert parsed == ReportSettings(few_shot=[2, 8], generative=False)
    generative_only = settings_from_arguments(
        ReportSettings, parser.parse_args(["--generative-only", "--generative-participants", "250"]), parser
    )
    assert generative_only == ReportSettings(generative_only=True, generative_participants=250)
    with pytest.raises(SystemExit):  # nothing to run: the parser's error, before any work
        settings_from_arguments(ReportSettings, parser.parse_args(["--generative-only", "--no-generative"]), parser)
    form_field = LSMEvaluateForm.base_fields["few_shot"]
    assert form_field.prepare_value(form_field.initial) == "1, 5, 10, 25" and form_field.clean("3, 9") == [3, 9]


def test_no_caption_level_ticked_is_refused_and_few_shot_sizes_are_kept_once_in_order():
    from modeling.kinds.lsm import LSMEvaluateForm

    form = SensorLMTrainForm(data={"caption_levels": []})
    assert not form.is_valid() and "caption_levels" in form.errors
    assert LSMEvaluateForm.base_fields["few_shot"].clean("10, 1, 5, 1") == [1, 5, 10]
