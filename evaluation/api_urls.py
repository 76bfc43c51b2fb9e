from django.urls import path

from evaluation import api

app_name = "api"
urlpatterns = [
    path("studies/", api.StudyList.as_view(), name="studies"),
    path("studies/<int:study_id>/items/", api.ItemList.as_view(), name="items"),
    path("studies/<int:study_id>/ratings/", api.RatingList.as_view(), name="ratings"),
    path("studies/<int:study_id>/skips/", api.SkipList.as_view(), name="skips"),
]
