"""`hillsync serve`: the web dashboard, connect flows in the browser, Strava's push callback."""
