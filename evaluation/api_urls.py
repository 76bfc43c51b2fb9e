from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from evaluation import api

app_name = "api"
urlpatterns = [
    path("studies/", api.StudyList.as_view(), name="studies"),
    path("studies/<int:study_id>/items/", api.ItemList.as_view(), name="items"),
    path("studies/<int:study_id>/items/<int:item_id>/reference/", api.ItemReference.as_view(), name="item_reference"),
    path("studies/<int:study_id>/criteria/", api.CriterionList.as_view(), name="criteria"),
    path("studies/<int:study_id>/ratings/", api.RatingList.as_view(), name="ratings"),
    path("studies/<int:study_id>/skips/", api.SkipList.as_view(), name="skips"),
    path("studies/<int:study_id>/status/", api.StudyStatus.as_view(), name="study_status"),
    path("studies/<int:study_id>/clinicians/", api.StudyClinicians.as_view(), name="study_clinicians"),
    path("studies/<int:study_id>/statistics/", api.StudyStatistics.as_view(), name="study_statistics"),
    path("jobs/", api.JobList.as_view(), name="jobs"),
    path("jobs/<int:job_id>/", api.JobDetail.as_view(), name="job"),
    # The OpenAPI 3 schema of the above (drf-spectacular): public, like any API's documentation; the data needs a token.
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", api.api_reference, name="reference"),
]
