from django.urls import path

from . import views

urlpatterns = [path("", views.sweep_list, name="sweeps")]
