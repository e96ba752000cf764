"""Sources of activities: folders of files, Strava, Garmin Connect. None touches the store."""
