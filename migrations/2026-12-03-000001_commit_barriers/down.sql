DROP TABLE commit_barriers;
