from __future__ import annotations

from typing import Any

from django import forms

from tpa.models import FieldMapping, Tpa


class FieldMappingForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = FieldMapping
        fields = ["source_column", "target_column", "transform", "argument"]

    def __init__(self, *args: Any, tpa: Tpa, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tpa = tpa
        self.instance.tpa = tpa
        self.instance.target_schema = tpa.target_schema
        names = list(tpa.target_schema.columns.order_by("position", "id").values_list("name", flat=True))
        self.fields["target_column"] = forms.ChoiceField(choices=[("", "---")] + [(n, n) for n in names])


class FieldMappingFormSet(forms.BaseModelFormSet):  # type: ignore[type-arg]
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
