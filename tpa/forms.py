from __future__ import annotations

from typing import Any

from django import forms

from tpa.models import FieldMapping, Tpa


class FieldMappingForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = FieldMapping
        fields = ["source_column", "target_column", "transform", "argument"]

    def __init__(self, *args: Any, tpa: Tpa, target_names: list[str], **kwargs: Any) -> None:
        """`target_names`: the target schema's columns, read once for the whole formset."""
        super().__init__(*args, **kwargs)
        self.tpa = tpa
        self.instance.tpa = tpa
        self.instance.target_schema = tpa.target_schema
        self.instance.known_target_columns = set(target_names)
        self.fields["target_column"] = forms.ChoiceField(choices=[("", "---")] + [(n, n) for n in target_names])

    def validate_unique(self) -> None:
        # One query per form otherwise (tpa_mapping_one_per_column). The formset holds every
        # mapping of the TPA's schema and refuses a target mapped twice, in memory; the
        # database's constraint still stops a concurrent save (the view says so).
        pass


class _LoadedObject(forms.ModelChoiceField):  # type: ignore[type-arg]
    """The hidden id of a form, found among the formset's objects (one query for all) instead
    of one query per form, which ModelChoiceField makes."""

    def __init__(self, formset: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.formset = formset

    def to_python(self, value: Any) -> Any:
        if value in self.empty_values:
            return None
        try:
            found = self.formset._existing_object(int(value))
        except (TypeError, ValueError):
            found = None
        if found is None:
            raise forms.ValidationError(self.error_messages["invalid_choice"], code="invalid_choice")
        return found


class FieldMappingFormSet(forms.BaseModelFormSet):  # type: ignore[type-arg]
    def add_fields(self, form: forms.ModelForm, index: int | None) -> None:  # type: ignore[type-arg]
        super().add_fields(form, index)
        pk = FieldMapping._meta.pk.name
        field = form.fields.get(pk)
        if isinstance(field, forms.ModelChoiceField):
            form.fields[pk] = _LoadedObject(
                self, field.queryset, required=field.required, initial=field.initial, widget=field.widget
            )

    def clean(self) -> None:
        super().clean()
        seen: set[str] = set()
        for form in self.forms:
            if not form.has_changed() and not form.instance.pk or form.cleaned_data.get("DELETE"):
                continue
            target = form.cleaned_data.get("target_column")
            if target in seen:
                raise forms.ValidationError(f"{target} is mapped twice; keep one mapping per target column.")
            if target:
                seen.add(target)
